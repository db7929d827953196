"""Federated averaging as pure functions: client update, FedAvg, one round per jitted call.

* Client update (paper Eq. 2, McMahan et al. 2017): E local epochs of minibatch SGD,
  ``W <- W - eta * grad L(W; b)``, over the client's own records (`training.make_trainer`
  with ``optax.sgd``).
* FedAvg (paper Eq. 1): ``M_{t+1} = M_t + sum_k w_k u_k / sum_k w_k`` with the update
  ``u_k = W_k - M_t`` and weights ``w_k`` = the client's example count (McMahan's FedAvg)
  or 1 (the paper's plain 1/N mean). A tree-mapped weighted sum.
* A round selects the participating clients (all, or a seeded fraction, fixed shapes),
  trains them from the same global params, and aggregates: one jitted call, compiled once
  for the whole run.

Clients are mapped with `train_and_sum`: ``jax.vmap`` over chunks of ``client_chunk``
clients, the chunks in sequence (``lax.scan``) summing the weighted updates as they go. A
chunk of all clients is a plain vmap (best on accelerators); a chunk of 1 runs clients one
after another inside the compiled round, which on a 2-core CPU is fastest and truly skips
padded steps (see `experiments/benchmark.py`).

The server's view (``make_round(server_view=...)``; a participant colluding with the
server sees the same, `fedgan_jax.adversary.colluding` attacks it): ``none`` (the default)
adds nothing to the round's metrics, and the program is the one without the option;
``uploads`` adds ``uploads``, every selected client's update ``u_k = W_k - M_t`` after any
clipping, stacked ``[m, ...]`` like the params (each client's update rides in its metrics,
so vmap, scan, chunks and shards stack it alike); ``secure_aggregation`` adds only
``upload_sum`` = ``sum_k w_k u_k`` and ``weight_sum`` = ``sum_k w_k``, what a secure
aggregation protocol reveals (before any DP-FedAvg noise, which the server adds).

With a `jax.sharding.Mesh`, the client axis is split over devices with `jax.shard_map`:
each device trains its clients and sums their weighted updates, and one ``psum`` (an
all-reduce) makes the FedAvg mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from fedgan_jax.core import checks
from fedgan_jax.core.errors import ConfigError
from fedgan_jax.core.types import ApplyFn, Params
from fedgan_jax.data.partition import ClientData
from fedgan_jax.nn import training

CLIENT_AXIS = "clients"
WEIGHTINGS = ("examples", "uniform")
SERVER_VIEWS = ("none", "uploads", "secure_aggregation")


def make_client_update(
    apply_fn: ApplyFn,
    *,
    local_epochs: int,
    batch_size: int,
    local_steps: int = 0,
    dp_clip: float = 0.0,
    dp_noise_multiplier: float = 0.0,
) -> Callable:
    """``client_update(params, x, y, count, key, learning_rate) -> (params, metrics)``.

    Paper Eq. 2. The learning rate is an argument (a traced scalar), so a schedule over
    rounds never recompiles the round. ``local_steps`` > 0: that many minibatches instead
    of `local_epochs` passes (`training.make_trainer`). ``dp_clip`` > 0: record-level
    DP-SGD steps (`training.private_gradient`; accounted in `privacy.py`).
    """

    def client_update(params, x, y, count, key, learning_rate):
        train = training.make_trainer(
            apply_fn,
            optax.sgd(learning_rate),
            epochs=local_epochs,
            batch_size=batch_size,
            steps=local_steps,
            dp_clip=dp_clip,
            dp_noise_multiplier=dp_noise_multiplier,
        )
        return train(params, x, y, count, key)

    return client_update


SCHEDULES = ("constant", "cosine")


def learning_rate_at(
    t: int, *, base: float, rounds: int, schedule: str = "constant", final_fraction: float = 0.0
) -> float:
    """The clients' learning rate in round t (1-based): constant, or cosine-decayed from
    `base` to ``base * final_fraction`` over the rounds (the paper gives an *initial*
    learning rate, Sec. V-B)."""
    if checks.choice("fl.lr_schedule", schedule, SCHEDULES) == "constant":
        return base
    return float(optax.cosine_decay_schedule(base, rounds, alpha=final_fraction)(t - 1))


def apply_mean_update(global_params: Params, update_sum: Params, weight_sum: jax.Array) -> Params:
    """Paper Eq. 1's last step, ``M + update_sum / weight_sum``: the round accumulates
    ``update_sum = sum_k w_k (W_k - M)`` client by client (`train_and_sum`)."""
    return jax.tree.map(
        lambda g, u: g + (u / weight_sum).astype(g.dtype), global_params, update_sum
    )


def train_and_sum(
    client_delta: Callable, like: Params, args: tuple, weights: jax.Array, client_chunk: int
) -> tuple[Params, Any]:
    """Runs every client and returns ``sum_k w_k u_k`` and the stacked metrics.

    ``client_delta(*client_args) -> (u_k, metrics)`` runs on each slice of `args` along
    its leading (client) axis; `like` is a pytree shaped like u_k. ``client_chunk`` clients
    are vmapped together and the chunks run in sequence (`lax.scan`) carrying the running
    weighted sum, so memory does not grow with the number of clients; 0 (or >= the client
    count) is one vmap over all, 1 a plain scan (where each client's loop over its real
    batches stops at its own count).
    """
    n = weights.shape[0]

    def weighted(deltas, w):
        return jax.tree.map(lambda d: jnp.tensordot(w, d, axes=1), deltas)

    if client_chunk <= 0 or client_chunk >= n:
        deltas, metrics = jax.vmap(client_delta)(*args)
        return weighted(deltas, weights), metrics
    zero = jax.tree.map(jnp.zeros_like, like)
    if client_chunk == 1:

        def one(total, xs):
            client_args, w = xs
            delta, metrics = client_delta(*client_args)
            return jax.tree.map(lambda t, d: t + w * d, total, delta), metrics

        return lax.scan(one, zero, (args, weights))
    pad = -n % client_chunk  # pad with weight-0 copies of the first clients
    args = jax.tree.map(lambda a: jnp.concatenate([a, a[:pad]]), args)
    weights = jnp.concatenate([weights, jnp.zeros((pad,), weights.dtype)])
    chunked = jax.tree.map(lambda a: a.reshape(-1, client_chunk, *a.shape[1:]), (args, weights))

    def chunk(total, xs):
        chunk_args, w = xs
        deltas, metrics = jax.vmap(client_delta)(*chunk_args)
        return jax.tree.map(jnp.add, total, weighted(deltas, w)), metrics

    total, metrics = lax.scan(chunk, zero, chunked)
    return total, jax.tree.map(lambda m: m.reshape(-1, *m.shape[2:])[:n], metrics)


def clip_update(delta: Params, clip_norm: float) -> tuple[Params, jax.Array]:
    """Scales `delta` to global L2 norm <= clip_norm (DP-FedAvg); returns it and its norm."""
    norm = optax.tree.norm(delta)
    scale = jnp.minimum(1.0, clip_norm / jnp.maximum(norm, 1e-12))
    return jax.tree.map(lambda d: d * scale.astype(d.dtype), delta), norm


def client_weights(counts: jax.Array, weighting: str) -> jax.Array:
    """FedAvg's weight of each client: its example count, or 1 (0 for an empty client)."""
    if checks.choice("fl.weighting", weighting, WEIGHTINGS) == "examples":
        return counts.astype(jnp.float32)
    return (counts > 0).astype(jnp.float32)


def dp_problem(clip_norm: float, noise_multiplier: float) -> str | None:
    """The one DP-FedAvg rule: the noise's scale is the clip norm, so noise needs a clip."""
    if noise_multiplier > 0 and not clip_norm > 0:
        return "needs fl.clip_norm > 0 (the noise scale)"
    return None


def make_round(
    client_update: Callable,
    *,
    num_clients: int,
    clients_per_round: int | None = None,
    client_chunk: int = 0,
    weighting: str = "examples",
    mesh: Mesh | None = None,
    clip_norm: float = 0.0,
    noise_multiplier: float = 0.0,
    adversary: int | None = None,
    adversary_update: Callable | None = None,
    server_view: str = "none",
) -> Callable:
    """Returns ``round_fn(global_params, clients, key, learning_rate, adversary_inputs=None)
    -> (params, metrics)``.

    `clients` is `ClientData` of ``num_clients`` clients (checked when traced:
    `ConfigError` otherwise). ``clients_per_round`` below
    ``num_clients`` samples that many distinct clients per round (seeded by `key`).
    metrics: per selected client ``client`` (index), ``loss``, ``steps``, ``finite``.

    The adversary's upload: with ``adversary_update`` None, participant ``adversary`` trains
    honestly like everyone. Otherwise its slot calls ``adversary_update(adversary_inputs,
    global_params, x, y, count, learning_rate) -> (params, metrics)`` (metrics shaped like
    `client_update`'s) on its own records; ``adversary_inputs`` is whatever the adversary
    passes (its state, its own key), which the round forwards and never reads.

    Defense (DP-FedAvg, McMahan et al., ICLR 2018): ``clip_norm`` > 0 clips every client's
    update to that global L2 norm (metrics gain ``update_norm``, before clipping);
    ``noise_multiplier`` z > 0 adds N(0, (z * clip_norm / sum_k w_k)^2) to each coordinate
    of the mean update (with uniform weights, the user-level Gaussian mechanism).

    ``server_view``: the module doc. Not jitted here: jit it, or vmap it over runs first.
    """
    m = num_clients if clients_per_round is None else clients_per_round
    _check_round(m, num_clients, clip_norm, noise_multiplier, adversary, adversary_update)
    checks.choice("server_view", server_view, SERVER_VIEWS, ConfigError)
    shards = 1 if mesh is None else mesh.shape[CLIENT_AXIS]
    slots = -(-m // shards) * shards  # selected clients, padded to the mesh
    upload = _uploads(client_update, adversary, adversary_update)
    local = _local_sum(upload, client_chunk, weighting, clip_norm, mesh, server_view == "uploads")

    def round_fn(global_params, clients: ClientData, key, learning_rate, adversary_inputs=None):
        check_clients(clients, num_clients)
        select_key, train_key, noise_key = jax.random.split(key, 3)
        idx, x, y, counts = _select(clients, select_key, num_clients, m, slots)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(train_key, idx)
        update_sum, weight_sum, metrics = local(
            global_params, x, y, counts, keys, idx, learning_rate, adversary_inputs
        )
        handed = _sums_handed_out(server_view, update_sum, weight_sum)  # before any noise
        if noise_multiplier > 0:  # DP-FedAvg: Gaussian noise of std z*C on the clipped sum
            update_sum = _add_noise(update_sum, noise_key, noise_multiplier * clip_norm)
        new_global = apply_mean_update(global_params, update_sum, weight_sum)
        metrics = {k: jax.tree.map(lambda v: v[:m], v) for k, v in metrics.items()}
        return new_global, {"client": idx[:m], **metrics, **handed}

    return round_fn


def _sums_handed_out(server_view, update_sum, weight_sum) -> dict:
    """Under secure aggregation the sums the protocol reveals, no more; otherwise none."""
    if server_view == "secure_aggregation":
        return {"upload_sum": update_sum, "weight_sum": weight_sum}
    return {}


def _check_round(m, num_clients, clip_norm, noise_multiplier, adversary, adversary_update):
    if not 1 <= m <= num_clients:
        raise ConfigError(f"clients_per_round={m}: must lie in [1, {num_clients}]")
    if problem := dp_problem(clip_norm, noise_multiplier):
        raise ConfigError(f"noise_multiplier={noise_multiplier}: {problem}")
    if adversary_update is not None and adversary is None:
        raise ConfigError("adversary_update needs the adversary's index (adversary=...)")


def check_clients(clients: ClientData, num_clients: int) -> None:
    """The round's client count must be the data's (at trace time: shapes are static);
    fewer would drop clients silently, more would train some twice."""
    sizes = {"x": clients.x.shape[0], "y": clients.y.shape[0], "counts": clients.counts.shape[0]}
    if len(set(sizes.values())) > 1:
        raise ConfigError(f"ClientData disagrees on the client count (leading axes {sizes})")
    held = sizes["x"]
    if held != num_clients:
        effect = "drop some" if held > num_clients else "train some twice"
        raise ConfigError(
            f"make_round(num_clients={num_clients}), but the clients hold {held} "
            f"(ClientData.x.shape[0]): the round would {effect}; pass num_clients={held}"
        )


def _select(clients: ClientData, key, num_clients: int, m: int, slots: int):
    """The round's clients (all, or m sampled), padded to `slots` with count-0 no-ops."""
    if m < num_clients:
        chosen = jnp.sort(jax.random.permutation(key, num_clients)[:m])
    else:
        chosen = jnp.arange(m)
    if slots == m == clients.num_clients:  # everyone, no padding: no gather
        return chosen, clients.x, clients.y, clients.counts
    idx = jnp.concatenate([chosen, jnp.zeros((slots - m,), chosen.dtype)])
    counts = jnp.where(jnp.arange(slots) < m, clients.counts[idx], 0)
    return idx, clients.x[idx], clients.y[idx], counts


def _uploads(client_update, adversary, adversary_update) -> Callable:
    """``upload(global_params, x, y, count, key, who, lr, adversary_inputs)``: the honest
    client update, or in the adversary's slot its own update function."""

    def upload(global_params, x, y, count, key, who, learning_rate, adversary_inputs):
        def honest():
            return client_update(global_params, x, y, count, key, learning_rate)

        if adversary_update is None:
            return honest()

        def malicious():
            return adversary_update(adversary_inputs, global_params, x, y, count, learning_rate)

        return lax.cond(who == adversary, malicious, honest)

    return upload


def _local_sum(upload, client_chunk, weighting, clip_norm, mesh, keep_uploads=False) -> Callable:
    """Trains the given clients; returns their weighted update sum, weight sum, metrics
    (with a mesh: each device its clients, then explicit psums). ``keep_uploads``: each
    client's (clipped) update rides in its metrics as ``uploads``, so every client mapping
    of `train_and_sum` (vmap, scan, chunks, shards) stacks it like the other metrics."""

    def local(global_params, x, y, counts, keys, idx, learning_rate, adversary_inputs):
        def client_delta(cx, cy, count, key, who):
            new_params, metrics = upload(
                global_params, cx, cy, count, key, who, learning_rate, adversary_inputs
            )
            delta = jax.tree.map(jnp.subtract, new_params, global_params)
            if clip_norm > 0:
                delta, metrics["update_norm"] = clip_update(delta, clip_norm)
            if keep_uploads:
                metrics["uploads"] = delta
            return delta, metrics

        w = client_weights(counts, weighting)
        update_sum, metrics = train_and_sum(
            client_delta, global_params, (x, y, counts, keys, idx), w, client_chunk
        )
        return update_sum, jnp.sum(w), metrics

    if mesh is None:
        return local

    def sharded(global_params, x, y, counts, keys, idx, learning_rate, adversary_inputs):
        update_sum, weight_sum, metrics = local(
            global_params, x, y, counts, keys, idx, learning_rate, adversary_inputs
        )
        return lax.psum(update_sum, CLIENT_AXIS), lax.psum(weight_sum, CLIENT_AXIS), metrics

    c = P(CLIENT_AXIS)
    return jax.shard_map(
        sharded,
        mesh=mesh,
        in_specs=(P(), c, c, c, c, c, P(), P()),
        out_specs=(P(), P(), c),
        # jax 0.10's varying-axes check rejects `min` of a per-client and a replicated
        # value under vmap (it asks for check_vma=False); the psums above are explicit
        # and tests/test_sharding.py checks the result against the unsharded round.
        check_vma=False,
    )


def _add_noise(update_sum: Params, key, std: float) -> Params:
    leaves, treedef = jax.tree.flatten(update_sum)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        u + std * jax.random.normal(k, u.shape, u.dtype) for u, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


def check_config(fl) -> None:
    """Checks the training fields of ``config.fl`` (the roles are `partition.check_config`'s)."""
    checks.integer("fl.rounds", fl.rounds, 1)
    checks.integer("fl.local_epochs", fl.local_epochs, 1)
    if checks.integer("fl.local_steps", fl.local_steps, 0) > 0 and fl.dpsgd_clip > 0:
        checks.fail(
            "fl.local_steps", fl.local_steps, "DP-SGD's accounting counts full epochs: use 0"
        )
    checks.number("fl.learning_rate", fl.learning_rate, 0.0, open_low=True)
    checks.choice("fl.lr_schedule", fl.lr_schedule, SCHEDULES)
    checks.number("fl.lr_final_fraction", fl.lr_final_fraction, 0.0, 1.0)
    checks.integer("fl.batch_size", fl.batch_size, 1)
    checks.number("fl.client_fraction", fl.client_fraction, 0.0, 1.0, open_low=True)
    weighting = checks.choice("fl.weighting", fl.weighting, WEIGHTINGS)
    clip = checks.number("fl.clip_norm", fl.clip_norm, 0.0)
    noise = checks.number("fl.noise_multiplier", fl.noise_multiplier, 0.0)
    if problem := dp_problem(clip, noise):
        checks.fail("fl.noise_multiplier", noise, problem)
    if noise > 0 and weighting != "uniform":
        checks.fail(
            "fl.noise_multiplier", noise, "needs fl.weighting=uniform (bounded sensitivity)"
        )
    checks.boolean("fl.secure_aggregation", fl.secure_aggregation)
    checks.integer("fl.client_chunk", fl.client_chunk, -1)
    devices = checks.integer("fl.mesh_devices", fl.mesh_devices, -1)
    if devices == 0:
        checks.fail("fl.mesh_devices", devices, "use 1 (no sharding), a device count, or -1 (all)")
    if devices > jax.device_count():
        visible = f"only {jax.device_count()} {jax.default_backend()} device(s) are visible"
        checks.fail("fl.mesh_devices", devices, visible)
