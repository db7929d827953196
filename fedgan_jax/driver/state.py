"""What a batch of runs carries between rounds: three roles, three immutable pytrees.

* `ServerState`: the federation's truth, the global params and the round.
* `AdversaryState`: what the adversary kept (paper Sec. III-D): the latest global model
  it received, the snapshots it chose to keep, its generator (and critic) state, when its
  generator started, and its own per-round measurements (the targets' losses it watches
  around a gradient-ascent upload; a colluding adversary's sums over the server's view).
  The server never reads it.
* `EvalLog`: what the experimenter records for the report (main-task accuracy and loss,
  the clients' training losses). No adversary function ever receives it.

Every array carries a leading run axis ``R``: a single run is a batch of one. The states
are `flax.struct.dataclass` pytrees, updated with ``.replace``, and orbax saves and
restores them as they are (`checkpointing.Checkpointer`).

Keys follow the same split (`derive_keys`): each role gets its own streams, folded from
the run's seed, so the adversary's functions can be handed its keys and nothing else.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from fedgan_jax.core.types import Params
from fedgan_jax.federation.server import ServerState  # noqa: F401  (params [R, ...] here)

# Independent PRNG streams of a run, folded into the run's key (the one registry).
STREAMS = {
    "init": 0,
    "fl": 1,
    "gan_init": 2,
    "gan": 3,
    "sample": 4,
    "attack": 5,
    "oracle": 6,
    "figure": 7,
    "strict": 8,  # the strict protocol's held-out sample (numpy, host side)
    "upload": 9,  # the adversary's own upload (malicious uploads only)
    "select": 10,  # the fixed latents and records of gan.select=own_mmd's checks
    "lira": 11,  # the LiRA shadows' masks, inits and rounds (driver.shadows)
}


@struct.dataclass
class ServerKeys:
    init: jax.Array  # [R] the global model's initialisation
    fl: jax.Array  # [R] client selection, local shuffles, DP noise (round t folded in)


@struct.dataclass
class AdversaryKeys:
    gan_init: jax.Array
    gan: jax.Array
    sample: jax.Array
    attack: jax.Array
    figure: jax.Array
    upload: jax.Array
    select: jax.Array
    lira: jax.Array


@struct.dataclass
class EvalKeys:
    oracle: jax.Array  # the evaluation-side upper bound's classifier


def derive_keys(run_keys: jax.Array) -> tuple[ServerKeys, AdversaryKeys, EvalKeys]:
    """The streams of each role from ``[R]`` run keys (``jax.random.key(seed)``)."""

    def stream(name):
        return jax.vmap(jax.random.fold_in, (0, None))(run_keys, STREAMS[name])

    return (
        ServerKeys(init=stream("init"), fl=stream("fl")),
        AdversaryKeys(**{f: stream(f) for f in AdversaryKeys.__dataclass_fields__}),
        EvalKeys(oracle=stream("oracle")),
    )


def round_key(stream_key: jax.Array, t: Any) -> jax.Array:
    """The key of round t of one stream (the same numbers on resume: keys are not state)."""
    return jax.random.fold_in(stream_key, t)


@struct.dataclass
class Snapshots:
    """Every `every`-th global model the adversary kept, preallocated (``[R, K, ...]``)."""

    round: jax.Array  # [K] the round of each slot
    params: Params  # [R, K, ...]


@struct.dataclass
class AdversaryState:
    latest: Params  # [R, ...] the latest global model it received (its discriminator)
    gan: Any  # gan.GanState with a run axis
    gan_start: jax.Array  # [R] round of its first generator update (0: not yet)
    snapshots: Snapshots | None  # None when it keeps none (orbax saves no empty arrays)
    grids: dict[str, jax.Array]  # figure samples, [R, C, n, H, W, ch] per label
    own_accuracy: jax.Array  # [R, T] the global model on its own records, per round
    generator_loss: jax.Array  # [R, T] (nan before the generator starts)
    generator_fooled: jax.Array  # [R, T]
    # gradient_ascent: the targets' losses under M_a and M_{a+1} for each ascent round a,
    # [R, A, 2, n_targets] (None when it watches none)
    ascent_loss: jax.Array | None = None
    # [R] norm of the last global update it saw, ||M_t - M_{t-1}|| (sizes an ascent step)
    last_update_norm: jax.Array | None = None
    # Hidden declarations: the others' output-bias change per round [R, T, C] and whether
    # it was asked to train [R, T] (None when it is told the declarations)
    recovery_signal: jax.Array | None = None
    selected: jax.Array | None = None
    # gan.select=own_mmd: the generator it keeps for D_gen and every check's score
    # [R, T] (nan between checks); None when it uses the last one
    gan_kept: Params | None = None
    generator_score: jax.Array | None = None
    # A colluding adversary (driver/collusion.py), summed over the rounds it watches:
    # FedMIA's score of the candidates [R, n] and of the coalition's own records
    # [R, c x capacity], the source log-posterior [R, n, N]; None when it does not collude
    fedmia_score: jax.Array | None = None
    fedmia_reference: jax.Array | None = None
    source_log_posterior: jax.Array | None = None

    @property
    def gan_kept_score(self) -> np.ndarray | None:
        """[R] the kept generator's score: the lowest check so far (inf before any)."""
        if self.generator_score is None:
            return None
        score = np.asarray(self.generator_score)
        return np.where(np.isnan(score), np.inf, score).min(axis=1)

    @property
    def gan_kept_round(self) -> np.ndarray | None:
        """[R] the round of the kept generator (the first lowest check; 0 before any)."""
        if self.generator_score is None:
            return None
        score = np.asarray(self.generator_score)
        best = np.where(np.isnan(score), np.inf, score)
        return np.where(np.isfinite(best.min(axis=1)), best.argmin(axis=1) + 1, 0)


def plateau_restores(score: np.ndarray, patience: int) -> np.ndarray:
    """[R, T] bool: the checks (non-nan entries of `score`) at which gan.select_patience
    restores the kept generator: the patience-th, 2 x patience-th, ... check in a row
    without a new lowest score. All False for patience 0."""
    score = np.asarray(score)
    out = np.zeros(score.shape, bool)
    if patience <= 0:
        return out
    best = np.full(score.shape[0], np.inf)
    since = np.zeros(score.shape[0], np.int64)
    for t in range(score.shape[1]):
        checked = ~np.isnan(score[:, t])
        improved = checked & (score[:, t] < best)
        best = np.where(improved, score[:, t], best)
        since = np.where(improved, 0, since + checked)
        out[:, t] = checked & ~improved & (since % patience == 0)
    return out


@struct.dataclass
class EvalLog:
    accuracy: jax.Array  # [R, T] main-task accuracy on the test split
    loss: jax.Array  # [R, T]
    client_loss: jax.Array  # [R, T, clients per round]
    clients: jax.Array | None = None  # [R, T, clients per round]: who trained in round t


@struct.dataclass
class RunState:
    server: ServerState
    adversary: AdversaryState
    log: EvalLog

    @property
    def round(self) -> int:
        return int(self.server.round)


def put_row(table: jax.Array, t: int, values: Any) -> jax.Array:
    """``table`` [R, T, ...] with column ``t - 1`` (round t, 1-based) set to `values`."""
    return jnp.asarray(table).at[:, t - 1].set(jnp.asarray(values, table.dtype))


def eval_log(num_runs: int, rounds: int, clients_per_round: int) -> EvalLog:
    return EvalLog(
        accuracy=jnp.zeros((num_runs, rounds), jnp.float32),
        loss=jnp.zeros((num_runs, rounds), jnp.float32),
        client_loss=jnp.zeros((num_runs, rounds, clients_per_round), jnp.float32),
        clients=jnp.zeros((num_runs, rounds, clients_per_round), jnp.int32),
    )


def nbytes(tree: Any) -> int:
    return int(sum(leaf.nbytes for leaf in jax.tree.leaves(tree)))
