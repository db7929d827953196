"""The colluding server in the driver (paper Sec. VI's "conspiracy"): config, plan, program.

With ``adversary.colludes=True`` the server hands the adversary every selected
participant's upload as it sees it (``fl.secure_aggregation=True``: only their sum) in the
last ``adversary.collude_rounds`` rounds; the server program is built with
``server_view="uploads"`` (or ``"secure_aggregation"``), and with ``"none"`` otherwise, so
a run that does not collude compiles the program it always did.

The coalition: the adversary and the next ``adversary.count - 1`` participants that are
not the victim, in index order (participants 0, 2, 3 for adversary 0, victim 1, count 3).
They pool their own records (`colluding.pool_records`): the coalition's records, whose
source it knows, are the reference (known non-members of the victim) that sets FedMIA's
decision threshold, and they are left out of every protocol's non-members, like the
adversary's own records (`evaluation.protocols.target_sets`).

In each watched round the adversary receives the round's view with the global model the
round started from (M_{t-1}) and accumulates (`observe`, mapped over runs):

* ``source_inference`` (Hu et al., `colluding.source_posterior`): the per-record
  log-posterior over the participants, summed over the watched rounds ``[R, n, N]``. A
  participant the round did not select adds the uniform ``-log m`` (no evidence). Score:
  the victim's summed log-posterior; IN when it is strictly the largest (the argmax).
* ``fedmia`` (Zhu et al., `colluding.fedmia_scores`, ``adversary.fedmia_statistic``): the
  victim-as-target one-tailed test against the other participants' null, ``-log p``
  summed over the watched rounds (Fisher) ``[R, n]``, also on the coalition's own records
  ``[R, c x capacity]``. IN when the score exceeds the coalition's records' 99th
  percentile: a threshold at 1% FPR on records known not to be the victim's
  (`colluding.threshold_at_fpr`), chosen without any record of the victim's.

Under secure aggregation both fall back as the library documents (``per_client`` False in
results.json's ``colluding``): source inference scores every record alike (no IN), FedMIA
tests the statistic under the aggregate update, standardised per class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np

from fedgan_jax.adversary import colluding
from fedgan_jax.core import checks
from fedgan_jax.core.types import Config
from fedgan_jax.driver.engine import over_runs, resolve_run_batching, server_view_of

ATTACKS = ("source_inference", "fedmia")
FPR = 0.01  # FedMIA's decision: the threshold at this FPR on the coalition's own records


def check_config(section, rounds: int, attacks: tuple[str, ...], num_participants: int) -> None:
    """The colluding fields of ``config.adversary`` (called by `adversary_plan.check_config`)."""
    colludes = checks.boolean("adversary.colludes", section.colludes)
    for name in ATTACKS:
        if name in attacks and not colludes:
            checks.fail(
                "adversary.colludes", colludes, f"the {name} attack needs the server's view: True"
            )
    count = checks.integer("adversary.count", section.count, 1, num_participants - 1)
    if count > 1 and not colludes:
        checks.fail("adversary.count", count, "colluders pool the server's view: needs colludes")
    watched = checks.integer("adversary.collude_rounds", section.collude_rounds, 1)
    if colludes and watched > rounds:
        checks.fail("adversary.collude_rounds", watched, f"it watches at most fl.rounds={rounds}")
    checks.choice("adversary.fedmia_statistic", section.fedmia_statistic, colluding.STATISTICS)


def colluders(config: Config) -> tuple[int, ...]:
    """The coalition (module doc): the adversary, then the next non-victim participants."""
    fl = config.fl
    order = [(fl.adversary + i) % fl.num_participants for i in range(fl.num_participants)]
    return tuple([p for p in order if p != fl.victim][: config.adversary.count])


@dataclasses.dataclass(frozen=True)
class CollusionPlan:
    """The colluding adversary's static settings, read once from the config."""

    view: str  # uploads | secure_aggregation
    rounds: tuple[int, ...]  # the rounds it watches (the last collude_rounds)
    colluders: tuple[int, ...]
    victim: int
    num_participants: int
    statistic: str  # FedMIA's statistic
    attacks: tuple[str, ...]  # of ATTACKS, those configured

    @property
    def per_client(self) -> bool:
        return self.view == "uploads"

    @classmethod
    def from_config(cls, config: Config) -> CollusionPlan | None:
        if not config.adversary.colludes:
            return None
        t, k = config.fl.rounds, config.adversary.collude_rounds
        return cls(
            view=server_view_of(config),
            rounds=tuple(range(t - k + 1, t + 1)),
            colluders=colluders(config),
            victim=config.fl.victim,
            num_participants=config.fl.num_participants,
            statistic=config.adversary.fedmia_statistic,
            attacks=tuple(a for a in ATTACKS if a in config.attack.attacks),
        )


def report(config: Config) -> dict[str, Any] | None:
    """results.json's ``colluding``: what the server handed out, when, to whom."""
    plan = CollusionPlan.from_config(config)
    if plan is None:
        return None
    return {
        "view": plan.view,
        "per_client": plan.per_client,
        "rounds": list(plan.rounds),
        "count": len(plan.colluders),
        "colluders": list(plan.colluders),
        "fedmia_statistic": plan.statistic,
        "fedmia_threshold_fpr": FPR,
    }


def build_program(config: Config, apply_fn, num_runs: int) -> Callable:
    """``(global_params, seen, pool_x, pool_y, view) -> (fedmia [R, n], log-posterior
    [R, n, N], fedmia on the coalition's records [R, c x capacity])``: one watched round.
    ``seen``: the round's metrics the server hands out (`colluding.server_view`)."""
    plan = CollusionPlan.from_config(config)
    bs = config.eval.batch_size

    def one_round(global_params, seen, pool_x, pool_y, view):
        sv = colluding.server_view(global_params, seen)
        m = sv.clients.shape[0]
        post = colluding.source_posterior(apply_fn, sv, pool_x, pool_y, batch_size=bs).scores
        full = jnp.full((post.shape[0], plan.num_participants), -jnp.log(m), post.dtype)
        full = full.at[:, sv.clients].set(post)

        def fedmia(x, y):
            kw = dict(target=plan.victim, statistic=plan.statistic, batch_size=bs)
            return colluding.fedmia_scores(apply_fn, sv, x, y, **kw).scores

        ref_x, ref_y = view.coalition.x, view.coalition.y  # [c, capacity, ...]
        ref = fedmia(ref_x.reshape(-1, *ref_x.shape[2:]), ref_y.reshape(-1))
        return fedmia(pool_x, pool_y), full, ref

    batching = resolve_run_batching(config.sweep.run_batching)
    return over_runs(one_round, num_runs, (0, 0, None, None, 0), batching)


def init_fields(plan: CollusionPlan | None, view, num_candidates: int) -> dict[str, Any]:
    """The `AdversaryState` fields it accumulates into, zero; None when it does not collude."""
    if plan is None:
        return {"fedmia_score": None, "fedmia_reference": None, "source_log_posterior": None}
    runs = view.victim.shape[0]
    ref = int(np.prod(view.coalition.y.shape[1:]))
    return {
        "fedmia_score": jnp.zeros((runs, num_candidates), jnp.float32),
        "fedmia_reference": jnp.zeros((runs, ref), jnp.float32),
        "source_log_posterior": jnp.zeros(
            (runs, num_candidates, plan.num_participants), jnp.float32
        ),
    }


def observe(program, plan, state, global_params, seen: dict, t: int, *, view, pool):
    """Round t's server view (``seen``, with M_{t-1} = `global_params`) added to the
    coalition's sums in the adversary's `state`, if t is a round it watches (the state as
    is otherwise). `program` / `plan`: the adversary's (`collude`, `collusion` of them);
    `pool`: the candidates ``(x, y)``."""
    plan = plan.collusion
    if plan is None or t not in plan.rounds:
        return state
    score, post, ref = program.collude(global_params, seen, *pool, view)
    return state.replace(
        fedmia_score=state.fedmia_score + score,
        fedmia_reference=state.fedmia_reference + ref,
        source_log_posterior=state.source_log_posterior + post,
    )


def scores(plan, state, view) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(scores, decisions) ``[R, n]`` of the configured colluding attacks (module doc)."""
    out_scores, out_decisions = {}, {}
    if plan is None:
        return out_scores, out_decisions
    if "source_inference" in plan.attacks:
        post = np.asarray(state.source_log_posterior)
        victim = post[..., plan.victim]
        others = np.delete(post, plan.victim, axis=-1).max(-1)
        out_scores["source_inference"], out_decisions["source_inference"] = victim, victim > others
    if "fedmia" in plan.attacks:
        score, ref = np.asarray(state.fedmia_score), np.asarray(state.fedmia_reference)
        counts = np.asarray(view.coalition.counts)  # [R, c]
        cap = ref.shape[1] // counts.shape[1]
        valid = (np.arange(cap)[None, None] < counts[..., None]).reshape(ref.shape)
        threshold = np.array(
            [colluding.threshold_at_fpr(ref[r][valid[r]], FPR) for r in range(ref.shape[0])]
        )
        out_scores["fedmia"], out_decisions["fedmia"] = score, score > threshold[:, None]
    return out_scores, out_decisions
