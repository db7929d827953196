"""Supervised training on one padded dataset: the local update of a client (paper Eq. 2)
and the training of the attack classifiers share it.

A dataset here is fixed-shape: ``x[capacity, ...]``, targets ``y[capacity]`` (int labels)
or ``y[capacity, classes]`` (soft labels), and ``count``: records ``0..count-1`` are real,
the rest is padding. Every epoch draws a fresh permutation of the real records from its own
key, the padding last; minibatches that hold no real record are skipped (a loop over the
real ones: a real skip when clients run in sequence, selects under `vmap`), and a partial
last batch is a mean over its real records. A `lax.scan` runs the epochs.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from fedgan_jax.core import checks
from fedgan_jax.core.types import ApplyFn, Params


def masked_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean cross-entropy over the records where `mask` is true (0 if none is)."""
    if targets.ndim == logits.ndim:  # soft targets (distillation)
        per_record = optax.softmax_cross_entropy(logits, targets)
    else:
        per_record = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    mask = mask.astype(per_record.dtype)
    return jnp.sum(per_record * mask) / jnp.maximum(mask.sum(), 1.0)


def epoch_permutation(key: jax.Array, count: jax.Array, capacity: int, padded: int) -> jax.Array:
    """A random order of records 0..count-1, then the padding, `padded` (>= capacity) long.

    Indices >= count mark padding; the tail beyond `capacity` repeats `capacity` (padding).
    """
    noise = jax.random.uniform(key, (capacity,))
    order = jnp.argsort(jnp.where(jnp.arange(capacity) < count, noise, 2.0))
    return jnp.pad(order, (0, padded - capacity), constant_values=capacity)


def pass_order(key, count, capacity: int, length: int, *, cycle: bool) -> jax.Array:
    """The record indices of one pass, `length` long: `epoch_permutation`, or with `cycle`
    that permutation's real records repeated until `length` (padding only if count=0)."""
    if not cycle:
        return epoch_permutation(key, count, capacity, length)
    order = epoch_permutation(key, count, capacity, capacity)
    i = jnp.arange(length) % jnp.maximum(count, 1)
    return jnp.where(count > 0, order[i], capacity)


def make_trainer(
    apply_fn: ApplyFn,
    optimizer: optax.GradientTransformation,
    *,
    epochs: int,
    batch_size: int,
    steps: int = 0,
    dp_clip: float = 0.0,
    dp_noise_multiplier: float = 0.0,
) -> Callable:
    """Returns ``train(params, x, y, count, key) -> (params, metrics)``, pure and jittable.

    ``steps`` > 0 replaces the `epochs` passes by that many full minibatches (FedAvg's "K
    local steps", `pass_order` with cycle). metrics: ``loss`` (mean over the steps that saw
    data), ``steps`` (how many did) and ``finite`` (every loss and the final params are
    finite). ``dp_clip`` > 0 makes every step a DP-SGD step (`private_gradient`), its noise
    from a stream of the epoch's key.
    """

    private = dp_clip > 0
    if private:
        grad_fn = private_gradient(apply_fn, dp_clip, dp_noise_multiplier, batch_size)
    else:
        grad_fn = jax.value_and_grad(
            lambda params, xb, yb, mask: masked_cross_entropy(apply_fn(params, xb), yb, mask)
        )

    def train(params, x, y, count, key):
        capacity = x.shape[0]
        # A batch wider than the client is one short batch of all its records (a DataLoader
        # without drop_last); DP-SGD keeps its width, which its noise is scaled to.
        batch = batch_size if private else min(batch_size, capacity)
        n_steps = steps if steps > 0 else -(-capacity // batch)
        step = _masked_step(grad_fn, optimizer, x, y, count, private)

        def epoch(carry, epoch_key):
            order = pass_order(epoch_key, count, capacity, n_steps * batch, cycle=steps > 0)
            batches = order.reshape(n_steps, batch)
            if private:  # the noise: a stream of the epoch key the permutation never uses
                batches = (batches, jax.random.split(jax.random.fold_in(epoch_key, 1), n_steps))
            return _real_steps(step, carry, batches, count)

        passes = 1 if steps > 0 else epochs
        (params, _), (losses, ran) = lax.scan(
            epoch, (params, optimizer.init(params)), jax.random.split(key, passes)
        )
        return params, _train_metrics(params, losses, ran)

    return train


def _masked_step(grad_fn, optimizer, x, y, count, private: bool) -> Callable:
    """One SGD step over a batch of record indices (indices >= count are padding):
    ``step(carry, xs) -> (carry, loss)``."""
    capacity = x.shape[0]

    def step(carry, xs):
        params, opt_state = carry
        idx, *noise_key = xs if private else (xs,)
        safe = jnp.minimum(idx, capacity - 1)
        loss, grads = grad_fn(params, x[safe], y[safe], idx < count, *noise_key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step


def _real_steps(step, carry, batches, count):
    """Runs `step` over the batches that hold a real record, which come first
    (`pass_order` puts the padding last), in a loop of that many trips; the rest are
    skipped. Returns ``(carry, (losses, ran))`` like a scan over every batch (0 where
    skipped). A loop with a data-dependent trip count rather than a `lax.cond` per batch:
    XLA:CPU compiles a step inside a conditional's branch ~1.2x slower (its im2col gather
    copies twice; studies/step_profile.py --round). Under `vmap` it runs the most
    trips any client needs, each client's carry selected."""
    idx = batches[0] if isinstance(batches, tuple) else batches
    n_steps = idx.shape[0]
    ran = jnp.any(idx < count, axis=1)
    trips = jnp.sum(ran)

    def body(i, state):
        carry, losses = state
        carry, loss = step(carry, jax.tree.map(lambda b: b[i], batches))
        return carry, losses.at[i].set(loss)

    losses = jnp.zeros((n_steps,), jnp.float32)
    carry, losses = lax.fori_loop(0, trips, body, (carry, losses))
    return carry, (losses, ran)


def _train_metrics(params, losses: jax.Array, ran: jax.Array) -> dict[str, jax.Array]:
    ran = ran.astype(jnp.float32)
    n_ran = ran.sum()
    finite = jnp.all(jnp.isfinite(losses)) & all_finite(params)
    return {
        "loss": jnp.sum(losses * ran) / jnp.maximum(n_ran, 1.0),
        "steps": n_ran,
        "finite": finite,
    }


def private_gradient(
    apply_fn: ApplyFn, clip: float, noise_multiplier: float, batch_size: int
) -> Callable:
    """DP-SGD's gradient (Abadi et al., CCS 2016): ``grad(params, xb, yb, mask, key) ->
    (loss, g)`` with ``g = (sum_i clip_C(g_i) + N(0, (sigma C)^2 I)) / B``.

    Per-example gradients ``g_i`` come from ``vmap`` of the single-record loss's gradient;
    each is scaled to L2 norm <= C, padding records (mask false) count 0, and the divisor
    is the fixed batch size B, so one record moves the step by at most C / B before noise.
    """

    def record_loss(params, x1, y1):
        return masked_cross_entropy(apply_fn(params, x1[None]), y1[None], jnp.ones((1,), bool))

    per_record = jax.vmap(jax.value_and_grad(record_loss), (None, 0, 0))

    def grad(params, xb, yb, mask, key):
        losses, grads = per_record(params, xb, yb)
        norms = jax.vmap(optax.tree.norm)(grads)
        scale = jnp.where(mask, jnp.minimum(1.0, clip / jnp.maximum(norms, 1e-12)), 0.0)
        leaves, treedef = jax.tree.flatten(grads)
        keys = jax.random.split(key, len(leaves))
        noisy = [
            jnp.tensordot(scale, g, axes=1)
            + noise_multiplier * clip * jax.random.normal(k, g.shape[1:], g.dtype)
            for g, k in zip(leaves, keys, strict=True)
        ]
        loss = jnp.sum(losses * mask) / jnp.maximum(mask.sum(), 1)
        return loss, jax.tree.unflatten(treedef, [g / batch_size for g in noisy])

    return grad


def all_finite(tree) -> jax.Array:
    """True when every leaf of `tree` is free of NaN and inf."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def batched_apply(apply_fn: ApplyFn, params: Params, x: jax.Array, batch_size: int) -> jax.Array:
    """``apply_fn(params, x)`` over `x` in chunks of `batch_size` (bounded memory)."""
    n = x.shape[0]
    chunks = -(-n // batch_size)
    padded = jnp.pad(x, [(0, chunks * batch_size - n)] + [(0, 0)] * (x.ndim - 1))
    logits = lax.map(
        lambda xb: apply_fn(params, xb), padded.reshape(chunks, batch_size, *x.shape[1:])
    )
    return logits.reshape(chunks * batch_size, -1)[:n]


def evaluate(
    apply_fn: ApplyFn,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    batch_size: int,
    count: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Accuracy and mean cross-entropy of `params` on (x, y), or on its first `count`."""
    logits = batched_apply(apply_fn, params, x, batch_size)
    mask = jnp.ones(y.shape, bool) if count is None else jnp.arange(y.shape[0]) < count
    n = jnp.maximum(mask.sum(), 1)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = jnp.argmax(logits, -1) == y
    return {"accuracy": jnp.sum(correct & mask) / n, "loss": jnp.sum(loss * mask) / n}


def check_config(eval_config) -> None:
    """Checks ``config.eval`` (the chunk of `evaluate` / `batched_apply`)."""
    checks.integer("eval.batch_size", eval_config.batch_size, 1)
