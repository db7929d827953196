"""The adversary's generator, trained against the frozen global model (paper Sec. IV-B).

The global model f received in round t is the discriminator D (Algorithm 1 line 3,
``D <- f``): its params are an *argument* of every step, never optimised, and the
gradient is taken with respect to the generator's params alone. Each round the adversary
takes ``steps_per_round`` optax steps on a class-conditional generator G(z, y); one jitted
call runs them all (`lax.scan`). After the federation, `sample` builds D_gen (Algorithm 1
lines 5-9): samples that f assigns to their target class (with an optional confidence),
labelled by f itself, ``y = f(x_gen)``.

``config.gan.mode`` picks the generator's objective; every mode reads only the global
params and the adversary's own view (`adversary.AdversaryView`):

* ``paper``: Eq. 5 alone, the cross-entropy of f(G(z, y)) against y (faithful baseline).
* ``dafl``: + DAFL's information-entropy and feature-activation terms (Chen et al.,
  ICCV 2019), which push for balanced, "natural" activations of f.
* ``adversarial``: + adversarial distillation (DFAD, Fang et al. 2019; ZSKT, Micaelli &
  Storkey 2019): a student learns to agree with f on G's samples while G seeks samples
  where they disagree, so G keeps exploring instead of collapsing onto one fooling image.
* ``prior``: + the real-vs-generated term of the paper's Eq. 4 with the adversary's *own*
  records as the real ones: a small discriminator tells them from G's samples and G learns
  to look like real data (strokes, backgrounds) while f decides the class.

Any mode may add the mode-seeking diversity term (Mao et al., CVPR 2019) with
``loss.diversity`` > 0. The weights are config fields (``config.gan.loss``); a mode's
defaults are in `MODE_DEFAULTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct
from jax import lax

from fedgan_jax import models, training
from fedgan_jax.errors import ConfigError
from fedgan_jax.types import Params
from fedgan_jax.view import AdversaryView

MODES = ("paper", "dafl", "adversarial", "prior")
# When the generator starts: the main-task accuracy the server announces reaches the
# threshold (the paper), the global model's accuracy on the adversary's own records does,
# or a fixed round.
TRIGGERS = ("accuracy", "own_accuracy", "round")
LOSS_TERMS = ("ce", "entropy", "activation", "disagreement", "realism", "diversity")
# Loss weights per mode; the config may override each one (config.gan.loss.<term>).
MODE_DEFAULTS: dict[str, dict[str, float]] = {
    "paper": {"ce": 1.0},
    "dafl": {"ce": 1.0, "entropy": 5.0, "activation": 0.1},
    "adversarial": {"ce": 1.0, "disagreement": 1.0},
    "prior": {"ce": 1.0, "realism": 0.3, "diversity": 1.0},
}


def loss_weights(mode: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The mode's weights with config overrides (a negative override means 'default')."""
    if mode not in MODES:
        raise ConfigError(f"gan.mode={mode!r}: allowed: {', '.join(MODES)}")
    weights = {term: 0.0 for term in LOSS_TERMS} | MODE_DEFAULTS[mode]
    for term, value in (overrides or {}).items():
        if value is not None and value >= 0:
            weights[term] = float(value)
    if weights["disagreement"] > 0 and weights["realism"] > 0:
        raise ConfigError(
            "gan.loss.disagreement and gan.loss.realism are both > 0: the first needs a "
            "student critic, the second a real/fake discriminator; use one of them"
        )
    return weights


@struct.dataclass
class GanState:
    generator: Params
    generator_opt: Any
    critic: Params | None  # the student (adversarial) or real/fake discriminator (prior)
    critic_opt: Any
    steps: jax.Array  # optax steps taken so far


@struct.dataclass
class DGen:
    """Generated training set of the attack classifier; records 0..count-1 are kept."""

    x: jax.Array  # [n, H, W, C]
    y: jax.Array  # [n] f's label, argmax f(x)
    soft: jax.Array  # [n, classes] f's probabilities
    target: jax.Array  # [n] the class G was asked for
    count: jax.Array  # [] kept records (f agrees with the target, confident enough)


class GanTrainer(NamedTuple):
    """Pure functions of one generator trainer (optax style: init / update / sample)."""

    init: Callable[..., GanState]  # (key, view) -> state
    update: Callable[..., tuple[GanState, dict]]  # (state, global_params, view, key)
    sample: Callable[..., DGen]  # (state, global_params, view, key) -> D_gen
    generate: Callable[..., jax.Array]  # (generator_params, z, labels) -> images
    images: Callable[..., jax.Array]  # (generator_params, key, per_class) -> [C, n, H, W, ch]


def balanced_labels(num_classes: int, per_class: int) -> jax.Array:
    """[num_classes * per_class] labels 0,1,..,C-1,0,1,.. (every class equally often)."""
    return jnp.tile(jnp.arange(num_classes), per_class)


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


def make_gan_trainer(
    *,
    dataset: str,
    classifier: nn.Module,
    mode: str = "paper",
    loss_overrides: dict[str, float] | None = None,
    latent_dim: int = 100,
    channels: int = 32,
    batch_per_class: int = 8,
    steps_per_round: int = 20,
    learning_rate: float = 2e-3,
    critic_learning_rate: float = 1e-3,
    samples_per_class: int = 200,
    keep_confidence: float = 0.0,
    filter_target: bool = True,
    conv_impl: str = "auto",
) -> GanTrainer:
    """Builds the generator trainer of `mode` against `classifier` (the global model)."""
    weights = loss_weights(mode, loss_overrides)
    gen = models.generator(dataset, channels=channels, conv_impl=conv_impl)
    num_classes = gen.num_classes
    image_shape = gen.image_shape
    batch = num_classes * batch_per_class
    if weights["diversity"] > 0 and batch_per_class < 2:
        raise ConfigError("gan.loss.diversity > 0 needs gan.batch_per_class >= 2 (pairs)")
    use_student = weights["disagreement"] > 0
    use_disc = weights["realism"] > 0
    critic = None
    if use_student:
        critic = classifier
    elif use_disc:  # the Table II architecture with one real/fake logit
        critic = type(classifier)(conv_impl=classifier.conv_impl, num_classes=1)
    gen_tx = optax.adam(learning_rate, b1=0.5)
    critic_tx = optax.adam(critic_learning_rate, b1=0.5)

    def generate(gen_params, z, labels):
        return gen.apply({"params": gen_params}, z, labels)

    def f(global_params, x, **kw):
        return classifier.apply({"params": lax.stop_gradient(global_params)}, x, **kw)

    def critic_apply(critic_params, x):
        return critic.apply({"params": critic_params}, x)

    def init(key, view: AdversaryView) -> GanState:
        del view  # the shapes come from the dataset
        gk, ck = jax.random.split(key)
        gen_params = models.init_params(
            gen, gk, jnp.zeros((batch, latent_dim)), jnp.zeros((batch,), jnp.int32)
        )
        critic_params = critic_opt = None
        if critic is not None:
            critic_params = models.init_params(critic, ck, jnp.zeros((1, *image_shape)))
            critic_opt = critic_tx.init(critic_params)
        return GanState(
            generator=gen_params,
            generator_opt=gen_tx.init(gen_params),
            critic=critic_params,
            critic_opt=critic_opt,
            steps=jnp.zeros((), jnp.int32),
        )

    def draw(key, view):
        labels = balanced_labels(num_classes, batch_per_class)
        z = jax.random.normal(key, (batch, latent_dim))
        w = view.declared_classes[labels].astype(jnp.float32)
        return z, labels, w

    def generator_loss(gen_params, critic_params, global_params, z, labels, w):
        x = generate(gen_params, z, labels)
        logits, features = f(global_params, x, with_features=True)
        wsum = jnp.maximum(w.sum(), 1.0)
        terms = {}
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        terms["ce"] = jnp.sum(ce * w) / wsum  # paper Eq. 5
        if weights["entropy"] > 0:  # DAFL: maximise the entropy of the mean prediction
            terms["entropy"] = -_entropy_of_mean(jax.nn.softmax(logits), w)
        if weights["activation"] > 0:  # DAFL: large penultimate activations
            terms["activation"] = -jnp.sum(jnp.abs(features).mean(-1) * w) / wsum
        if weights["disagreement"] > 0:  # DFAD: seek where the student disagrees with f
            gap = jnp.abs(critic_apply(critic_params, x) - logits).mean(-1)
            terms["disagreement"] = -jnp.sum(gap * w) / wsum
        if weights["realism"] > 0:  # Eq. 4's real-vs-generated term, non-saturating
            fake = critic_apply(critic_params, x)[:, 0]
            terms["realism"] = jnp.sum(optax.sigmoid_binary_cross_entropy(fake, 1.0) * w) / wsum
        if weights["diversity"] > 0:  # mode seeking: reward image change per latent change
            terms["diversity"] = -_mode_seeking(x, z, num_classes)
        total = sum(weights[t] * v for t, v in terms.items())
        fooled = jnp.sum((jnp.argmax(logits, -1) == labels) * w) / wsum
        return total, (x, logits, {"loss": total, "fooled": fooled, **terms})

    def critic_loss(critic_params, x, teacher_logits, view, key):
        if use_student:  # DFAD's student: match f on the generated samples (L1 on logits)
            return jnp.abs(critic_apply(critic_params, x) - teacher_logits).mean()
        # prior: the adversary's own records are real, generated ones fake
        idx = jax.random.randint(key, (x.shape[0],), 0, jnp.maximum(view.own_count, 1))
        real = critic_apply(critic_params, view.own_x[idx])[:, 0]
        fake = critic_apply(critic_params, x)[:, 0]
        return (
            optax.sigmoid_binary_cross_entropy(real, 1.0).mean()
            + optax.sigmoid_binary_cross_entropy(fake, 0.0).mean()
        )

    def step(state: GanState, key, global_params, view):
        zk, rk = jax.random.split(key)
        z, labels, w = draw(zk, view)
        (_, (x, logits, metrics)), grads = jax.value_and_grad(generator_loss, has_aux=True)(
            state.generator, state.critic, global_params, z, labels, w
        )
        updates, gen_opt = gen_tx.update(grads, state.generator_opt, state.generator)
        state = state.replace(
            generator=optax.apply_updates(state.generator, updates),
            generator_opt=gen_opt,
            steps=state.steps + 1,
        )
        if critic is not None:  # the critic learns on the samples G just produced
            x = lax.stop_gradient(x)
            c_loss, c_grads = jax.value_and_grad(critic_loss)(
                state.critic, x, lax.stop_gradient(logits), view, rk
            )
            c_updates, c_opt = critic_tx.update(c_grads, state.critic_opt, state.critic)
            state = state.replace(
                critic=optax.apply_updates(state.critic, c_updates), critic_opt=c_opt
            )
            metrics = {**metrics, "critic_loss": c_loss}
        return state, metrics

    def update(state: GanState, global_params, view: AdversaryView, key):
        """``steps_per_round`` generator (and critic) steps against frozen `global_params`."""
        state, metrics = lax.scan(
            lambda s, k: step(s, k, global_params, view),
            state,
            jax.random.split(key, steps_per_round),
        )
        return state, jax.tree.map(jnp.mean, metrics)

    def images(gen_params, key, per_class: int) -> jax.Array:
        """`per_class` samples of every class, ``[classes, per_class, H, W, C]``.

        Generated in training-shaped balanced batches: the generator normalises with
        batch statistics, so it sees batches like the ones it was trained on.
        """
        chunks = -(-per_class // batch_per_class)
        z = jax.random.normal(key, (chunks, batch, latent_dim))
        labels = balanced_labels(num_classes, batch_per_class)
        x = lax.map(lambda zc: generate(gen_params, zc, labels), z)
        # [chunks, batch_per_class * C, ...] with labels 0..C-1 repeating -> per class
        x = x.reshape(chunks * batch_per_class, num_classes, *image_shape)
        return jnp.swapaxes(x, 0, 1)[:, :per_class]

    def sample(state: GanState, global_params, view: AdversaryView, key) -> DGen:
        """Algorithm 1 lines 5-9: `samples_per_class` per class; keep what f assigns to
        the target class (confidence >= keep_confidence), label it by f."""
        x = images(state.generator, key, samples_per_class)
        labels = jnp.repeat(jnp.arange(num_classes), samples_per_class)
        x = x.reshape(num_classes * samples_per_class, *image_shape)
        probs = jax.nn.softmax(
            training.batched_apply(lambda p, xb: f(p, xb), global_params, x, batch)
        )
        pred = jnp.argmax(probs, -1)
        keep = view.declared_classes[labels] & (probs.max(-1) >= keep_confidence)
        if filter_target:
            keep = keep & (pred == labels)
        order = jnp.argsort(~keep, stable=True)  # kept records first, in generation order
        return DGen(
            x=x[order],
            y=pred[order],
            soft=probs[order],
            target=labels[order],
            count=keep.sum().astype(jnp.int32),
        )

    return GanTrainer(init=init, update=update, sample=sample, generate=generate, images=images)
