"""The generator's objective as pure functions of a static `TrainerSpec` (paper Sec. IV-B).

`TrainerSpec` holds everything static about one generator trainer (loss weights, the
modules, the optimizers, the sizes); every function of the trainer, here and in
`gan_sampling.py`, `gan_selection.py` and `gan.py`, takes it as its first argument, and
`gan.make_gan_trainer` builds it and binds them. This module holds what they share, G and
f applied (`generate`; `frozen_f`, the global model behind `lax.stop_gradient`, so the
gradient reaches the generator alone) and `balanced_labels`, and the loss: each term of
the generator's loss that its weight switches on (`LOSS_TERMS`, presets in
`gan_config.py`), their weighted sum (`generator_loss`) and the critic's loss
(`critic_loss`: the student of ``adversarial``, the real/fake discriminator of ``prior``).
The optax steps on these losses are in `gan.py`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax import lax


def balanced_labels(num_classes: int, per_class: int) -> jax.Array:
    """[num_classes * per_class] labels 0,1,..,C-1,0,1,.. (every class equally often)."""
    return jnp.tile(jnp.arange(num_classes), per_class)


@dataclasses.dataclass(frozen=True)
class TrainerSpec:
    """Everything static about one generator trainer; the trainer's functions (here and
    in `gan_sampling`, `gan_selection`, `gan`) take it as their first argument and
    `gan.make_gan_trainer` binds it."""

    weights: dict[str, float]  # every term of LOSS_TERMS, 0 when off
    image_shape: tuple[int, ...]  # (H, W, C) of the images
    num_classes: int
    generator: nn.Module
    classifier: nn.Module  # the global model f (the frozen discriminator)
    critic: nn.Module | None  # the student (adversarial) / real-fake discriminator (prior)
    generator_tx: optax.GradientTransformation
    critic_tx: optax.GradientTransformation
    latent_dim: int
    batch_per_class: int
    steps_per_round: int
    samples_per_class: int
    keep_confidence: float
    filter_target: bool
    # The realism term (and its discriminator's fake examples) on the adversary's own
    # classes only: its real examples are its own records, so a generated digit of
    # another class is "fake" by its class alone and the term pulls it towards the
    # adversary's digits. False: on every class it generates (the prior as first built).
    realism_own: bool = False

    @property
    def batch(self) -> int:
        return self.num_classes * self.batch_per_class


def generate(spec: TrainerSpec, gen_params, z, labels):
    """G(z, labels): images ``[batch, *image_shape]``."""
    return spec.generator.apply({"params": gen_params}, z, labels)


def frozen_f(spec: TrainerSpec, global_params, x, **kw):
    """The global model f on `x` (logits; ``with_features=True``: logits and features),
    its params behind `lax.stop_gradient`: nothing optimises them."""
    return spec.classifier.apply({"params": lax.stop_gradient(global_params)}, x, **kw)


def _critic_apply(spec: TrainerSpec, critic_params, x):
    return spec.critic.apply({"params": critic_params}, x)


def _entropy_of_mean(probs: jax.Array, weights: jax.Array) -> jax.Array:
    mean = jnp.sum(probs * weights[:, None], 0) / jnp.maximum(weights.sum(), 1.0)
    return -jnp.sum(mean * jnp.log(mean + 1e-8))


def _mode_seeking(images: jax.Array, z: jax.Array, num_classes: int = 1) -> jax.Array:
    """Mean |G(z1) - G(z2)| / |z1 - z2| over pairs of samples of the same class.

    The batch is ``[per_class * num_classes]`` with labels 0..C-1 repeating (see
    `balanced_labels`): rows of the ``[per_class, C]`` view share a class, and the first
    half of the rows is paired with the second half.
    """
    rows = images.shape[0] // num_classes
    half = rows // 2
    x = images.reshape(rows, num_classes, -1)
    zz = z.reshape(rows, num_classes, -1)
    num = jnp.mean(jnp.abs(x[:half] - x[half : 2 * half]), axis=-1)
    den = jnp.mean(jnp.abs(zz[:half] - zz[half : 2 * half]), axis=-1)
    return jnp.mean(num / (den + 1e-5))


def _loss_terms(spec: TrainerSpec, critic_params, x, z, logits, features, labels, w, w_real):
    """Every term of the generator's loss whose weight is on (each to be minimised);
    `w_real`: the realism term's per-sample weights (`gan._realism_weights`)."""
    weights = spec.weights
    wsum = jnp.maximum(w.sum(), 1.0)
    terms = {}
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    terms["ce"] = jnp.sum(ce * w) / wsum  # paper Eq. 5
    if weights["entropy"] > 0:  # DAFL: maximise the entropy of the mean prediction
        terms["entropy"] = -_entropy_of_mean(jax.nn.softmax(logits), w)
    if weights["activation"] > 0:  # DAFL: large penultimate activations
        terms["activation"] = -jnp.sum(jnp.abs(features).mean(-1) * w) / wsum
    if weights["disagreement"] > 0:  # DFAD: seek where the student disagrees with f
        gap = jnp.abs(_critic_apply(spec, critic_params, x) - logits).mean(-1)
        terms["disagreement"] = -jnp.sum(gap * w) / wsum
    if weights["realism"] > 0:  # Eq. 4's real-vs-generated term, non-saturating
        fake = _critic_apply(spec, critic_params, x)[:, 0]
        bce = optax.sigmoid_binary_cross_entropy(fake, 1.0)
        own_sum = jnp.maximum(w_real.sum(), 1.0) if spec.realism_own else wsum
        terms["realism"] = jnp.sum(bce * w_real) / own_sum
    if weights["diversity"] > 0:  # mode seeking: reward image change per latent change
        terms["diversity"] = -_mode_seeking(x, z, spec.num_classes)
    return terms, wsum


def generator_loss(
    spec: TrainerSpec, gen_params, critic_params, global_params, z, labels, w, w_real
):
    """The weighted sum of the terms; aux: the samples, f's logits and the metrics."""
    x = generate(spec, gen_params, z, labels)
    if spec.weights["activation"] > 0:  # only this term reads f's features
        logits, features = frozen_f(spec, global_params, x, with_features=True)
    else:
        logits, features = frozen_f(spec, global_params, x), None
    terms, wsum = _loss_terms(spec, critic_params, x, z, logits, features, labels, w, w_real)
    total = sum(spec.weights[t] * v for t, v in terms.items())
    fooled = jnp.sum((jnp.argmax(logits, -1) == labels) * w) / wsum
    return total, (x, logits, {"loss": total, "fooled": fooled, **terms})


def critic_loss(spec: TrainerSpec, critic_params, x, teacher_logits, view, key, w_real):
    """The critic's loss on G's samples `x`: the student's L1 distance to f's
    `teacher_logits` (disagreement), or the real/fake discriminator's binary
    cross-entropy, the adversary's own records real (realism)."""
    if spec.weights["disagreement"] > 0:  # DFAD's student: match f on G's samples (L1)
        return jnp.abs(_critic_apply(spec, critic_params, x) - teacher_logits).mean()
    # prior: the adversary's own records are real, generated ones fake
    idx = jax.random.randint(key, (x.shape[0],), 0, jnp.maximum(view.own_count, 1))
    real = _critic_apply(spec, critic_params, view.own_x[idx])[:, 0]
    fake = optax.sigmoid_binary_cross_entropy(_critic_apply(spec, critic_params, x)[:, 0], 0.0)
    if spec.realism_own:  # fake examples of its own classes only
        fake = jnp.sum(fake * w_real) / jnp.maximum(w_real.sum(), 1.0)
    else:
        fake = fake.mean()
    return optax.sigmoid_binary_cross_entropy(real, 1.0).mean() + fake
