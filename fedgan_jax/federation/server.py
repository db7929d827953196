"""A FedAvg federation as one ``(init, round)`` pair over a `ServerState` (fedjax's shape).

    fed = federated_averaging(apply_fn, num_clients=5, local_epochs=1, batch_size=64,
                     learning_rate=0.05, adversary=0, upload=gradient_ascent(apply_fn))
    server = fed.init(params)
    server, metrics = jax.jit(fed.round)(server, clients, key)               # honest round
    server, metrics = jax.jit(fed.round)(server, clients, key, adversary_inputs=inputs)

`round` is paper Eq. 1-2 (McMahan et al. 2017): every selected client trains E local
epochs of SGD from the global params on its own padded records, the server adds the
(example- or uniformly) weighted mean of the updates. It is `fedavg.make_round`, the one
round the driver also runs, with the round counter carried in the state.

The adversary's slot: with ``upload`` given, a call with ``adversary_inputs`` runs
``upload(adversary_inputs, global_params, x, y, count, learning_rate) -> (params,
metrics)`` in participant ``adversary``'s place (`fedgan_jax.adversary.uploads` builds
the paper's and the literature's; any function of that signature works); a call without
runs the honest round, where the adversary trains like everyone. Whether a round is
malicious is known when it is traced (``adversary_inputs`` is None or not), so each kind
compiles once.

Arguments of `federated_averaging` beyond the obvious: ``learning_rate`` may be an optax
schedule of ``round - 1``, and ``round(..., learning_rate=lr)`` overrides it for one
call; ``clients_per_round`` samples that many clients a round (seeded by the key);
DP-FedAvg (McMahan et al. 2018) needs ``weighting='uniform'`` for its accounting;
``client_chunk`` / ``mesh`` choose how clients are mapped (`fedavg.train_and_sum`; a mesh
shards the client axis over devices). ``server_view`` says what the round's metrics hand
out of what the server sees: nothing more (``none``, the same program), every selected
client's update stacked (``uploads``) or only their weighted sum
(``secure_aggregation``); `fedgan_jax.adversary.colluding` holds the attacks that read it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh

from fedgan_jax.core.errors import ConfigError
from fedgan_jax.core.types import ApplyFn, Params, PRNGKey
from fedgan_jax.data.partition import ClientData
from fedgan_jax.federation import fedavg


class Upload(Protocol):
    """What a participant sends in its slot of a round instead of its honest update.

    Called with whatever the caller passes as ``adversary_inputs``, the global params, the
    participant's own padded records ``x [capacity, ...]``, ``y [capacity]``, their
    ``count`` and the round's learning rate; returns its new params (the server takes
    their difference from the global params) and metrics shaped like
    `fedavg.make_client_update`'s (``loss``, ``steps``, ``finite``)."""

    def __call__(
        self,
        inputs: Any,
        global_params: Params,
        x: jax.Array,
        y: jax.Array,
        count: jax.Array,
        learning_rate: jax.Array,
    ) -> tuple[Params, dict[str, jax.Array]]: ...


@struct.dataclass
class ServerState:
    """The federation's truth: the global model M_t and the rounds done (``[]`` int32).

    The driver stacks a leading run axis onto `params` (one state for a batch of runs)."""

    params: Params
    round: jax.Array


class Federation(NamedTuple):
    """``init(params) -> ServerState`` and ``round(state, clients, key, *, learning_rate=None,
    adversary_inputs=None) -> (ServerState, metrics)``; pure and jittable."""

    init: Callable[[Params], ServerState]
    round: Callable[..., tuple[ServerState, dict[str, jax.Array]]]


def federated_averaging(
    apply_fn: ApplyFn,
    *,
    num_clients: int,
    local_epochs: int = 1,
    batch_size: int = 64,
    learning_rate: float | Callable[[jax.Array], jax.Array] = 0.05,
    local_steps: int = 0,
    clients_per_round: int | None = None,
    weighting: str = "examples",
    clip_norm: float = 0.0,
    noise_multiplier: float = 0.0,
    dp_clip: float = 0.0,
    dp_noise_multiplier: float = 0.0,
    adversary: int | None = None,
    upload: Upload | None = None,
    client_chunk: int = 0,
    mesh: Mesh | None = None,
    server_view: str = "none",
) -> Federation:
    """The federation of `num_clients` participants training `apply_fn`'s params.

    ``learning_rate``: a float or a function of the 1-based round; ``weighting``:
    ``examples`` (McMahan) or ``uniform`` (the paper's 1/N). Defenses: ``clip_norm`` /
    ``noise_multiplier`` is user-level DP-FedAvg, ``dp_clip`` / ``dp_noise_multiplier``
    record-level DP-SGD in every honest client (epsilon: `federation.privacy`).
    ``server_view``: ``none``, ``uploads`` or ``secure_aggregation`` (module doc)."""
    if upload is not None and adversary is None:
        raise ConfigError("upload=... needs the adversary's index (adversary=...)")
    if adversary is not None and not 0 <= adversary < num_clients:
        raise ConfigError(f"adversary={adversary}: must lie in [0, {num_clients - 1}]")
    client_update = fedavg.make_client_update(
        apply_fn,
        local_epochs=local_epochs,
        batch_size=batch_size,
        local_steps=local_steps,
        dp_clip=dp_clip,
        dp_noise_multiplier=dp_noise_multiplier,
    )
    shared = dict(
        num_clients=num_clients,
        clients_per_round=clients_per_round,
        client_chunk=client_chunk,
        weighting=weighting,
        mesh=mesh,
        clip_norm=clip_norm,
        noise_multiplier=noise_multiplier,
        server_view=server_view,
    )
    honest = fedavg.make_round(client_update, **shared)
    malicious = None
    if upload is not None:
        malicious = fedavg.make_round(
            client_update, adversary=adversary, adversary_update=upload, **shared
        )
    return Federation(init=_init, round=partial(_round, honest, malicious, learning_rate))


def _init(params: Params) -> ServerState:
    return ServerState(params=params, round=jnp.zeros((), jnp.int32))


def _round(
    honest: Callable,
    malicious: Callable | None,
    base_rate: Any,
    state: ServerState,
    clients: ClientData,
    key: PRNGKey,
    *,
    learning_rate: Any = None,
    adversary_inputs: Any = None,
) -> tuple[ServerState, dict[str, jax.Array]]:
    """`Federation.round`: round t = state.round + 1 at its learning rate, honest without
    `adversary_inputs` (known when traced), else with the adversary's upload."""
    t = state.round + 1
    rate = base_rate if learning_rate is None else learning_rate
    lr = rate(t) if callable(rate) else rate
    if adversary_inputs is None:
        params, metrics = honest(state.params, clients, key, lr)
    elif malicious is None:
        raise ConfigError("adversary_inputs given, but the federation has no upload=...")
    else:
        params, metrics = malicious(state.params, clients, key, lr, adversary_inputs)
    return ServerState(params=params, round=jnp.asarray(t, jnp.int32)), metrics
