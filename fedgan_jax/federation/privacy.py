"""The run's privacy budget (epsilon, delta), from Google's ``dp-accounting`` (RDP accountant).

Two mechanisms, each accounted as the round actually runs it:

* **User-level, DP-FedAvg** (``fl.clip_norm`` C, ``fl.noise_multiplier`` z; McMahan et al.
  2018). A round samples ``m = clients_per_round`` of the N participants *without
  replacement, a fixed number* (`federated._select`), clips each update to C and adds
  N(0, (zC)^2) to their sum. A fixed cohort size makes N and m public, so the neighbouring
  relation is REPLACE_ONE (one participant's data swapped for another's): the sum's L2
  sensitivity is 2C and the Gaussian event's noise multiplier is z/2. Each round is a
  ``SampledWithoutReplacementDpEvent(N, m, Gaussian(z/2))`` (Wang, Balle & Kasiviswanathan,
  AISTATS 2019, Thm. 27), a plain ``Gaussian(z/2)`` when everyone trains (m = N),
  composed over the T rounds. Sampling never weakens a guarantee, but that bound can be
  looser than ignoring it (at m/N = 0.6 and small z it is): the reported epsilon is the
  smaller of the sampled and the unsampled accounting, both valid upper bounds.
* **Record-level, DP-SGD inside each client** (``fl.dpsgd_clip`` C_r,
  ``fl.dpsgd_noise_multiplier`` sigma; Abadi et al. 2016). Every local step clips each
  example's gradient to C_r and adds N(0, (sigma C_r)^2) to their sum. Batches come from a
  shuffle of the client's records each epoch (`training.epoch_permutation`), so a record
  is in exactly one step per epoch; under REPLACE_ONE (sensitivity 2 C_r) that step is a
  ``Gaussian(sigma/2)``, and a participant that trains in every round composes E x T of
  them: ``epsilon`` assumes no amplification by sampling, a bound that holds for shuffled
  batches. ``epsilon_sampled_batches`` is the usual (optimistic) figure that treats each
  step's batch as a uniform sample of B of the victim's n records; Chua et al. (2024)
  show shuffled batches can leak more than that, so it is reported beside, not instead.

``fl.dp_delta`` (default 1e-5) is the delta of both: well below 1/N for any federation
and below 1/n for the record-level guarantee of a client with up to 10^5 records, the
usual rule (delta much smaller than one over the number of protected units).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from fedgan_jax.core import checks

if TYPE_CHECKING:
    import dp_accounting

# dp_accounting (and the scipy it imports, ~2 s) is imported where an epsilon is computed:
# a run without DP noise, and every launcher start, does without it.


def epsilon(event: dp_accounting.DpEvent, delta: float) -> float:
    """Epsilon of `event` at `delta`: the RDP accountant under REPLACE_ONE."""
    import dp_accounting
    from dp_accounting import rdp

    replace_one = dp_accounting.NeighboringRelation.REPLACE_ONE
    accountant = rdp.RdpAccountant(neighboring_relation=replace_one)
    return float(accountant.compose(event).get_epsilon(delta))


def sampled_epsilon(noise_multiplier: float, sample: int, population: int, count: int, delta):
    """`count` Gaussian releases of noise multiplier z (std / C) on a clipped *sum* over a
    uniform fixed-size `sample` of `population` units: the smaller of the sampled (Wang et
    al.) and the unsampled accounting (module doc). Sensitivity 2C: the event's z/2."""
    import dp_accounting

    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier / 2)
    plain = epsilon(dp_accounting.SelfComposedDpEvent(gaussian, count), delta)
    if sample >= population:
        return plain
    wor = dp_accounting.SampledWithoutReplacementDpEvent(population, sample, gaussian)
    return min(plain, epsilon(dp_accounting.SelfComposedDpEvent(wor, count), delta))


def report(
    *,
    delta: float,
    rounds: int,
    num_participants: int,
    clients_per_round: int,
    noise_multiplier: float = 0.0,
    dpsgd_noise_multiplier: float = 0.0,
    local_epochs: int = 1,
    batch_size: int = 64,
    victim_records: int = 0,
) -> dict[str, Any]:
    """``results.json["privacy"]``: (epsilon, delta) of each mechanism a run used, and the
    headline ``epsilon`` (user-level when DP-FedAvg adds noise (`noise_multiplier`), else
    record-level (DP-SGD's `dpsgd_noise_multiplier` over the victim's records); None when
    neither adds noise: no finite guarantee)."""
    user = record = None
    if noise_multiplier > 0:
        z, n = noise_multiplier, num_participants
        user = {
            "epsilon": sampled_epsilon(z, clients_per_round, n, rounds, delta),
            "clients_per_round": clients_per_round,
            "num_participants": n,
            "rounds": rounds,
        }
    if dpsgd_noise_multiplier > 0:
        sigma, epochs, b = dpsgd_noise_multiplier, local_epochs * rounds, batch_size
        steps = epochs * math.ceil(victim_records / b)
        record = {
            "epsilon": sampled_epsilon(sigma, 1, 1, epochs, delta),
            "epsilon_sampled_batches": sampled_epsilon(sigma, b, victim_records, steps, delta),
            "victim_records": victim_records,
            "epochs": epochs,
        }
    headline = user or record
    return {
        "epsilon": None if headline is None else headline["epsilon"],
        "delta": delta,
        "accountant": "rdp",
        "neighboring_relation": "replace_one",
        "user_level": user,
        "record_level": record,
    }


def check_config(fl) -> None:
    """``fl.dp_delta`` and the record-level DP-SGD fields (the user-level ones are
    `federated.check_config`'s)."""
    checks.number("fl.dp_delta", fl.dp_delta, 0.0, 1.0, open_low=True)
    clip = checks.number("fl.dpsgd_clip", fl.dpsgd_clip, 0.0)
    noise = checks.number("fl.dpsgd_noise_multiplier", fl.dpsgd_noise_multiplier, 0.0)
    if noise > 0 and not clip > 0:
        checks.fail("fl.dpsgd_noise_multiplier", noise, "needs fl.dpsgd_clip > 0 (the scale)")
