"""Membership scores of any model on any records: ``score(apply_fn, params, x, y) -> [n]``.

Higher means more member-like; feed them with the truth to `evaluation.metrics.
membership_metrics` (AUC, TPR at 1% and 0.1% FPR). Each is the library form of an attack
the driver runs (`membership.py` holds the statistics over logits):

* `loss_threshold` (Yeom et al., CSF 2018): minus the record's loss;
* `loss_calibrated`: the logit-scaled confidence ``log p_y - log(1 - p_y)`` (Carlini et
  al., S&P 2022), standardised over the candidates of the record's class;
* `trajectory`: that z-score under each of K kept global models (params stacked on a
  leading axis), averaged (Liu et al., CCS 2022, with snapshots instead of distillation);
* `ascent_response` (Nasr et al., S&P 2019): the relative loss drop from the model right
  after a gradient-ascent upload to the model one round later, standardised per class.

The candidates ``(x, y)`` are the records the adversary is asked about (labels included,
membership not); every per-class statistic is taken over them and nothing else.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedgan_jax.adversary import membership
from fedgan_jax.adversary.attack import record_losses
from fedgan_jax.core.types import ApplyFn, Params
from fedgan_jax.nn.training import batched_apply


def _logits(apply_fn: ApplyFn, params: Params, x: jax.Array, batch_size: int) -> jax.Array:
    return batched_apply(apply_fn, params, jnp.asarray(x), batch_size)


def loss_threshold(
    apply_fn: ApplyFn, params: Params, x: jax.Array, y: jax.Array, *, batch_size: int = 256
) -> jax.Array:
    """``-loss`` of every record under `params` ``[n]``."""
    return -record_losses(_logits(apply_fn, params, x, batch_size), jnp.asarray(y))


def loss_calibrated(
    apply_fn: ApplyFn, params: Params, x: jax.Array, y: jax.Array, *, batch_size: int = 256
) -> jax.Array:
    """The logit-scaled confidence, standardised per class over the candidates ``[n]``."""
    return membership.calibrated(_logits(apply_fn, params, x, batch_size), jnp.asarray(y))


def trajectory(
    apply_fn: ApplyFn, snapshots: Params, x: jax.Array, y: jax.Array, *, batch_size: int = 256
) -> jax.Array:
    """`loss_calibrated` under every kept model (`snapshots`: params with a leading K
    axis), averaged over the K models ``[n]``."""
    logits = jax.lax.map(lambda p: _logits(apply_fn, p, x, batch_size), snapshots)
    return membership.trajectory(logits, jnp.asarray(y))


def ascent_response(
    apply_fn: ApplyFn,
    after_upload: Params,
    next_round: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    batch_size: int = 256,
) -> jax.Array:
    """The relative loss drop ``(l_a - l_{a+1}) / l_a`` from the global model right after
    the ascent upload (`after_upload`) to the one a round later, standardised per class."""
    y = jnp.asarray(y)
    logits = _logits(apply_fn, after_upload, x, batch_size)
    before = record_losses(logits, y)
    after = record_losses(_logits(apply_fn, next_round, x, batch_size), y)
    return membership.loss_drop(before[None], after[None], y, logits.shape[-1])
