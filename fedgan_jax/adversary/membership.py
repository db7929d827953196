"""Membership scores a participant can compute: calibrated per class, over time, and after
an active upload (pure functions of one run; the adversary maps them over runs).

The global model's loss differs far more between classes than between members and
non-members of one class, so every score here is *calibrated per class*: a record's
statistic is standardised against the candidate records of the same (true) class. The
candidates are the records the adversary is asked about (the target pool), so the
calibration uses nothing but what it was handed.

* `logit_confidence`: ``log p_y - log(1 - p_y)`` (Carlini et al., LiRA, S&P 2022): the
  logit-scaled confidence is close to Gaussian per example, where the loss is not.
* ``loss_calibrated``: the latest global model's logit confidence, standardised per class.
* ``trajectory`` (Liu et al., CCS 2022, with kept snapshots instead of distilled models):
  the standardised confidence under every kept global model; the score is its *mean*
  over the snapshots. A member is fit better than the other candidates of its class in
  most rounds, while which records happen to be fit well in one round is noise that the
  mean averages out; standardising each round removes the drift of the whole model.
* ``gradient_ascent`` (Nasr et al., S&P 2019): after an upload that pushed the targets'
  loss up, the relative drop of each target's loss in the next round (the victim pulls
  its own records back down), standardised per class, averaged over the ascent rounds.

User-level decisions combine the label rule with membership (`user_level`): a record is
IN when the global model assigns it one of the victim's declared labels *and* it is
member-like (calibrated score above its class's mean). The ROC score is the soft version:
``log P(victim's labels) + log sigmoid(z)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedgan_jax.adversary.attack import decide, victim_mass


def logit_confidence(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``log p_y - log(1 - p_y)`` per record, computed from the logits (stable)."""
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return true - jax.nn.logsumexp(others, axis=-1)


def standardise_per_class(values: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    """``(v - mean_c) / std_c`` with the mean and std over the records of class c."""
    onehot = jax.nn.one_hot(labels, num_classes, dtype=values.dtype)
    count = jnp.maximum(onehot.sum(0), 1.0)
    mean = (onehot * values[:, None]).sum(0) / count
    var = (onehot * (values[:, None] - mean) ** 2).sum(0) / count
    return (values - mean[labels]) / jnp.sqrt(var[labels] + 1e-12)


def calibrated(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``loss_calibrated``'s membership z-score of every candidate ``[n]``."""
    return standardise_per_class(logit_confidence(logits, labels), labels, logits.shape[-1])


def trajectory(snapshot_logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``trajectory``'s z-score: `calibrated` under each snapshot ``[K, n, C]``, averaged."""
    return jax.vmap(calibrated, in_axes=(0, None))(snapshot_logits, labels).mean(0)


def loss_drop(
    before: jax.Array, after: jax.Array, labels: jax.Array, num_classes: int
) -> jax.Array:
    """``gradient_ascent``'s z-score from the targets' losses ``[A, n]`` under the model
    right after each malicious round (`before`) and one round later (`after`)."""
    relative = (before - after) / (before + 1e-6)
    z = jax.vmap(standardise_per_class, in_axes=(0, None, None))(relative, labels, num_classes)
    return z.mean(0)


def user_level(
    logits: jax.Array, victim_labels: jax.Array, member_z: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(scores, IN decisions) ``[n]``: the victim's label *and* member-like (module doc)."""
    mass = victim_mass(logits, victim_labels)
    score = jnp.log(mass + 1e-30) + jax.nn.log_sigmoid(member_z)
    return score, decide(logits, victim_labels) & (member_z > 0)
