"""User-level membership inference (paper Sec. IV-C, Algorithm 1 lines 10-15) and baselines.

The attack classifier (the dataset's Table II architecture) is trained with optax on
D_gen; on a target record it predicts a label, and the record is marked IN when that label
is one of the victim's declared labels, OUT otherwise. The membership *score* (for ROC
curves) is the classifier's probability mass on the victim's labels.

Attacks, all under the same decision rule where it applies:

* ``gan``: the paper's attack, the classifier trained on D_gen.
* ``global_model``: the latest global model the adversary received, used directly as
  the attack classifier. No GAN: what the adversary gets for free.
* ``oracle``: a classifier trained on the federation's real training records of every
  class, pooled. No real adversary has them: an upper bound for label-based attacks.
* ``loss_threshold`` (Yeom et al., CSF 2018): score = minus the global model's loss on
  the record with its true label; IN when the loss is at most the global model's mean
  loss on the adversary's own (member) records, the adversary's only calibration data.
* ``source_inference`` and ``fedmia``: a colluding server's attacks on each upload
  (`colluding.py`; from the driver, `fedgan_jax.driver.collusion`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

from fedgan_jax.core import checks
from fedgan_jax.evaluation.protocols import PROTOCOLS
from fedgan_jax.nn import models, training

# The membership attacks (loss_calibrated, trajectory, gradient_ascent) are in membership.py,
# the colluding server's (source_inference, fedmia) in colluding.py.
ATTACKS = (
    "gan",
    "global_model",
    "oracle",
    "loss_threshold",
    "loss_calibrated",
    "trajectory",
    "gradient_ascent",
    "lira",  # LiRA with shadow federations, online (adversary/lira.py, driver/shadows.py)
    "lira_offline",  # the same shadows, the one-sided test against OUT alone
    "source_inference",  # a colluding server's (driver/collusion.py)
    "fedmia",
)
LABEL_MODES = ("hard", "soft")
LIRA_RUN_AXES = ("map", "vmap")  # how the shadows are mapped (`lira.RUN_AXES`)
LIRA_VARIANCES = ("global", "per_record")  # one spread per side, or each record's own


def check_config(a) -> tuple[str, ...]:
    """Checks ``config.attack``; returns the attacks it names."""
    attacks = checks.subset("attack.attacks", a.attacks, ATTACKS)
    checks.subset("attack.protocols", a.protocols, PROTOCOLS)
    checks.integer("attack.epochs", a.epochs, 1)
    checks.integer("attack.batch_size", a.batch_size, 1)
    checks.number("attack.learning_rate", a.learning_rate, 0.0, open_low=True)
    checks.choice("attack.label_mode", a.label_mode, LABEL_MODES)
    checks.integer("attack.lira_shadows", a.lira_shadows, 2)
    checks.choice("attack.lira_run_axis", a.lira_run_axis, LIRA_RUN_AXES)
    checks.choice("attack.lira_variance", a.lira_variance, LIRA_VARIANCES)
    return attacks


def make_classifier_trainer(
    classifier: nn.Module,
    image_shape: tuple[int, ...],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
) -> Callable:
    """``train(key, x, y, count) -> (params, metrics)``: a fresh `classifier` (Table II,
    or any `models.Classifier`, checked here) trained with Adam on the first `count`
    records of (x, y); y hard or soft labels."""
    models.check_classifier(classifier, image_shape, role="attack classifier")

    def apply_fn(params, x):
        return classifier.apply({"params": params}, x)

    fit = training.make_trainer(
        apply_fn, optax.adam(learning_rate), epochs=epochs, batch_size=batch_size
    )

    def train(key, x, y, count):
        init_key, fit_key = jax.random.split(key)
        params = models.init_params(classifier, init_key, jnp.zeros((1, *image_shape)))
        return fit(params, x, y, count, fit_key)

    return train


def victim_mass(logits: jax.Array, victim_labels: jax.Array) -> jax.Array:
    """Membership score: probability mass on the victim's declared labels."""
    return jnp.sum(jax.nn.softmax(logits) * victim_labels.astype(logits.dtype), axis=-1)


def decide(logits: jax.Array, victim_labels: jax.Array) -> jax.Array:
    """IN (True) when the predicted label is one of the victim's declared labels."""
    return victim_labels[jnp.argmax(logits, axis=-1)]


def record_losses(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def loss_threshold(
    target_logits: jax.Array,
    target_labels: jax.Array,
    own_logits: jax.Array,
    own_labels: jax.Array,
    own_count: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Yeom et al.'s attack: (scores, decisions) for the target records.

    The threshold is the mean loss on the adversary's own first `own_count` records.
    """
    target_loss = record_losses(target_logits, target_labels)
    own_loss = record_losses(own_logits, own_labels)
    valid = jnp.arange(own_loss.shape[0]) < own_count
    threshold = jnp.sum(jnp.where(valid, own_loss, 0.0)) / jnp.maximum(own_count, 1)
    return -target_loss, target_loss <= threshold
