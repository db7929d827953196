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
  to look like real data (strokes, backgrounds) while f decides the class. With
  ``gan.realism_classes=own`` the term (and the discriminator's fake side) reads only the
  adversary's own classes: on the others "fake" is the class itself, and the term drags
  the victim's digits towards the adversary's (docs/results.md, Generator modes).

Any mode may add the mode-seeking diversity term (Mao et al., CVPR 2019) with
``loss.diversity`` > 0. A mode is a *preset* of loss weights (`MODE_DEFAULTS`); each
weight may be overridden (``config.gan.loss.<term>``, -1 keeps the preset's).
`objective_name` names what a run really trains: the preset, then ``+term=weight`` for
each weight that differs from it, in `LOSS_TERMS` order (``paper``, ``paper+realism=0.3``,
``prior+diversity=0``, ``dafl+entropy=2.5+activation=0``).

`check_config` checks ``config.gan``; `loss_weights` is the one place that checks the mode
and the weights, and the builder calls it too. The trainer is module-level pure functions
of a static `TrainerSpec` (weights, modules, optimizers, sizes): the loss terms, the
critic's loss, one step, a round's `lax.scan`, sampling; `make_gan_trainer` builds the
spec and binds it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct
from jax import lax

from fedgan_jax.adversary.view import AdversaryView
from fedgan_jax.core import checks
from fedgan_jax.core.errors import ConfigError
from fedgan_jax.core.types import Params
from fedgan_jax.nn import models, training

MODES = ("paper", "dafl", "adversarial", "prior")
# When the generator starts: the main-task accuracy the server announces reaches the
# threshold (the paper), the global model's accuracy on the adversary's own records does,
# or a fixed round.
TRIGGERS = ("accuracy", "own_accuracy", "round")
# Which generator D_gen is drawn from: the last one, or the one (checked every
# gan.select_every rounds) whose samples of the adversary's own classes lie closest to its
# own records (`own_class_mmd`, in pixel space or in the global model's feature space): a
# label-free guard against collapse at long budgets.
SELECTIONS = ("last", "own_mmd", "own_feature_mmd")
# Which generated classes the realism term (the prior's) reads: every declared class, or
# only the adversary's own, the classes its real examples come from (TrainerSpec.realism_own).
REALISM_CLASSES = ("declared", "own")

LOSS_TERMS = ("ce", "entropy", "activation", "disagreement", "realism", "diversity")
# Loss weights per mode; the config may override each one (config.gan.loss.<term>).
MODE_DEFAULTS: dict[str, dict[str, float]] = {
    "paper": {"ce": 1.0},
    "dafl": {"ce": 1.0, "entropy": 5.0, "activation": 0.1},
    "adversarial": {"ce": 1.0, "disagreement": 1.0},
    "prior": {"ce": 1.0, "realism": 0.3, "diversity": 1.0},
}


def loss_weights(mode: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The preset `mode` with config overrides (-1 or None: keep the preset's weight).

    The one place that checks ``gan.mode`` and ``gan.loss.*`` (`ConfigError`).
    """
    checks.choice("gan.mode", mode, MODES)
    weights = {term: 0.0 for term in LOSS_TERMS} | MODE_DEFAULTS[mode]
    for term, value in (overrides or {}).items():
        field = f"gan.loss.{term}"
        if term not in LOSS_TERMS:
            checks.fail(field, value, f"unknown term; allowed: {', '.join(LOSS_TERMS)}")
        if value is None or checks.number(field, value, -1.0) == -1.0:
            continue
        if value < 0.0:
            checks.fail(field, value, "must be >= 0, or -1 for the mode's default")
        weights[term] = float(value)
    if weights["disagreement"] > 0 and weights["realism"] > 0:
        raise ConfigError(
            "gan.loss.disagreement and gan.loss.realism are both > 0: the first needs a "
            "student critic, the second a real/fake discriminator; use one of them"
        )
    return weights


def objective_name(mode: str, overrides: dict[str, float] | None = None) -> str:
    """The objective a run trains: the preset, then ``+term=weight`` for every weight
    that differs from it (in `LOSS_TERMS` order, weights as ``%g``).

    ``objective_name("paper") == "paper"``, ``objective_name("paper", {"realism": 0.3})
    == "paper+realism=0.3"``, ``objective_name("prior", {"diversity": 0}) ==
    "prior+diversity=0"``. An override equal to the preset's weight changes nothing.
    """
    preset = loss_weights(mode)
    weights = loss_weights(mode, overrides)
    changed = [f"+{t}={weights[t]:g}" for t in LOSS_TERMS if weights[t] != preset[t]]
    return mode + "".join(changed)


def _check_batch(weights: dict[str, float], batch_per_class: int) -> None:
    if weights["diversity"] > 0 and batch_per_class < 2:
        checks.fail("gan.batch_per_class", batch_per_class, "the diversity term needs >= 2")


def split_figure_rounds(figure_rounds, rounds: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(kept, dropped)``: the rounds of `figure_rounds` within ``[1, rounds]``, and those
    beyond the last round (`config_lib.resolve` drops them with a warning). An entry that
    is not an integer >= 1 is a `ConfigError`."""
    values = tuple(figure_rounds)
    for r in values:
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            checks.fail("gan.figure_rounds", values, "must hold rounds (integers >= 1)")
    return tuple(r for r in values if r <= rounds), tuple(r for r in values if r > rounds)


def check_config(g, *, rounds: int, uses_gan: bool = True) -> dict[str, float]:
    """Checks ``config.gan`` (`rounds`: fl.rounds; `uses_gan`: the gan attack is on);
    returns the loss weights."""
    weights = loss_weights(g.mode, dict(g.loss))
    trigger = checks.choice("gan.trigger", g.trigger, TRIGGERS)
    checks.number("gan.trigger_accuracy", g.trigger_accuracy, 0.0, 1.0)
    trigger_round = checks.integer("gan.trigger_round", g.trigger_round, 1)
    if uses_gan and trigger == "round" and trigger_round > rounds:
        checks.fail("gan.trigger_round", trigger_round, f"must be <= fl.rounds={rounds}")
    checks.integer("gan.steps_per_round", g.steps_per_round, 1)
    _check_batch(weights, checks.integer("gan.batch_per_class", g.batch_per_class, 1))
    checks.number("gan.learning_rate", g.learning_rate, 0.0, open_low=True)
    checks.number("gan.critic_learning_rate", g.critic_learning_rate, 0.0, open_low=True)
    checks.integer("gan.latent_dim", g.latent_dim, 1)
    channels = checks.integer("gan.channels", g.channels, 4)
    if channels % 4:
        checks.fail("gan.channels", channels, "must be a multiple of 4")
    checks.integer("gan.samples_per_class", g.samples_per_class, 1)
    checks.number("gan.keep_confidence", g.keep_confidence, 0.0, 1.0)
    checks.boolean("gan.filter_target", g.filter_target)
    split_figure_rounds(g.figure_rounds, rounds)
    checks.integer("gan.figure_per_class", g.figure_per_class, 1)
    checks.choice("gan.select", g.select, SELECTIONS)
    checks.integer("gan.select_every", g.select_every, 1)
    checks.integer("gan.select_patience", g.select_patience, 0)
    checks.choice("gan.realism_classes", g.realism_classes, REALISM_CLASSES)
    return weights


@struct.dataclass
class GanState:
    generator: Params
    generator_opt: Any
    critic: Params | None  # the student (adversarial) or real/fake discriminator (prior)
    critic_opt: Any
    steps: jax.Array  # optax steps taken so far
    # Factor on the generator's Adam updates (its learning rate), only with
    # gan.select_patience, which halves it at each restore of the kept generator
    # (adversary._select_generator); None: no factor, the step's arithmetic untouched.
    lr_scale: jax.Array | None = None


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
    sample_pool: Callable[..., DGen]  # (generators [K, ...], global_params, view, key)
    generate: Callable[..., jax.Array]  # (generator_params, z, labels) -> images
    images: Callable[..., jax.Array]  # (generator_params, key, per_class) -> [C, n, H, W, ch]
    own_mmd: Callable[..., jax.Array]  # (generator_params, view, key) -> [] (`own_class_mmd`)


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


@dataclasses.dataclass(frozen=True)
class TrainerSpec:
    """Everything static about one generator trainer; the module-level functions below
    take it as their first argument and `make_gan_trainer` binds it."""

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


def _generate(spec: TrainerSpec, gen_params, z, labels):
    return spec.generator.apply({"params": gen_params}, z, labels)


def _f(spec: TrainerSpec, global_params, x, **kw):
    return spec.classifier.apply({"params": lax.stop_gradient(global_params)}, x, **kw)


def _critic_apply(spec: TrainerSpec, critic_params, x):
    return spec.critic.apply({"params": critic_params}, x)


def _init(spec: TrainerSpec, key, view: AdversaryView) -> GanState:
    del view  # the shapes come from the spec
    gk, ck = jax.random.split(key)
    batch, latent_dim = spec.batch, spec.latent_dim
    gen_params = models.init_params(
        spec.generator, gk, jnp.zeros((batch, latent_dim)), jnp.zeros((batch,), jnp.int32)
    )
    critic_params = critic_opt = None
    if spec.critic is not None:
        critic_params = models.init_params(spec.critic, ck, jnp.zeros((1, *spec.image_shape)))
        critic_opt = spec.critic_tx.init(critic_params)
    return GanState(
        generator=gen_params,
        generator_opt=spec.generator_tx.init(gen_params),
        critic=critic_params,
        critic_opt=critic_opt,
        steps=jnp.zeros((), jnp.int32),
    )


def _draw(spec: TrainerSpec, key, view: AdversaryView):
    """A balanced batch of latents and labels; weight 0 for undeclared classes."""
    labels = balanced_labels(spec.num_classes, spec.batch_per_class)
    z = jax.random.normal(key, (spec.batch, spec.latent_dim))
    w = view.declared_classes[labels].astype(jnp.float32)
    return z, labels, w


def _realism_weights(spec: TrainerSpec, view: AdversaryView, labels, w):
    """Per sample, the weight of the realism term and of the discriminator's fake side."""
    if not spec.realism_own:
        return w
    own = jnp.take(view.declared, view.adversary, axis=-2)
    return w * own[labels].astype(w.dtype)


def _loss_terms(spec: TrainerSpec, critic_params, x, z, logits, features, labels, w, w_real):
    """Every term of the generator's loss whose weight is on (each to be minimised);
    `w_real`: the realism term's per-sample weights (`_realism_weights`)."""
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


def _generator_loss(
    spec: TrainerSpec, gen_params, critic_params, global_params, z, labels, w, w_real
):
    """The weighted sum of the terms; aux: the samples, f's logits and the metrics."""
    x = _generate(spec, gen_params, z, labels)
    if spec.weights["activation"] > 0:  # only this term reads f's features
        logits, features = _f(spec, global_params, x, with_features=True)
    else:
        logits, features = _f(spec, global_params, x), None
    terms, wsum = _loss_terms(spec, critic_params, x, z, logits, features, labels, w, w_real)
    total = sum(spec.weights[t] * v for t, v in terms.items())
    fooled = jnp.sum((jnp.argmax(logits, -1) == labels) * w) / wsum
    return total, (x, logits, {"loss": total, "fooled": fooled, **terms})


def _critic_loss(spec: TrainerSpec, critic_params, x, teacher_logits, view, key, w_real):
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


def _critic_step(spec: TrainerSpec, state: GanState, x, logits, view, key, w_real):
    """One optax step of the critic on the samples G just produced."""
    x = lax.stop_gradient(x)
    c_loss, c_grads = jax.value_and_grad(partial(_critic_loss, spec))(
        state.critic, x, lax.stop_gradient(logits), view, key, w_real
    )
    c_updates, c_opt = spec.critic_tx.update(c_grads, state.critic_opt, state.critic)
    state = state.replace(critic=optax.apply_updates(state.critic, c_updates), critic_opt=c_opt)
    return state, c_loss


def _step(spec: TrainerSpec, state: GanState, key, global_params, view):
    """One generator step (then one critic step, if the objective has a critic)."""
    zk, rk = jax.random.split(key)
    z, labels, w = _draw(spec, zk, view)
    w_real = _realism_weights(spec, view, labels, w)
    loss = partial(_generator_loss, spec)
    (_, (x, logits, metrics)), grads = jax.value_and_grad(loss, has_aux=True)(
        state.generator, state.critic, global_params, z, labels, w, w_real
    )
    updates, gen_opt = spec.generator_tx.update(grads, state.generator_opt, state.generator)
    if state.lr_scale is not None:
        updates = jax.tree.map(lambda u: u * state.lr_scale, updates)
    state = state.replace(
        generator=optax.apply_updates(state.generator, updates),
        generator_opt=gen_opt,
        steps=state.steps + 1,
    )
    if spec.critic is not None:
        state, c_loss = _critic_step(spec, state, x, logits, view, rk, w_real)
        metrics = {**metrics, "critic_loss": c_loss}
    return state, metrics


def _update(spec: TrainerSpec, state: GanState, global_params, view: AdversaryView, key):
    """``steps_per_round`` generator (and critic) steps against frozen `global_params`."""
    state, metrics = lax.scan(
        lambda s, k: _step(spec, s, k, global_params, view),
        state,
        jax.random.split(key, spec.steps_per_round),
    )
    return state, jax.tree.map(jnp.mean, metrics)


def _images(spec: TrainerSpec, gen_params, key, per_class: int) -> jax.Array:
    """`per_class` samples of every class, ``[classes, per_class, H, W, C]``.

    Generated in training-shaped balanced batches: the generator normalises with batch
    statistics, so it sees batches like the ones it was trained on.
    """
    bpc, num_classes = spec.batch_per_class, spec.num_classes
    chunks = -(-per_class // bpc)
    z = jax.random.normal(key, (chunks, spec.batch, spec.latent_dim))
    labels = balanced_labels(num_classes, bpc)
    x = lax.map(lambda zc: _generate(spec, gen_params, zc, labels), z)
    # [chunks, batch_per_class * C, ...] with labels 0..C-1 repeating -> per class
    x = x.reshape(chunks * bpc, num_classes, *spec.image_shape)
    return jnp.swapaxes(x, 0, 1)[:, :per_class]


def _sample(spec: TrainerSpec, state: GanState, global_params, view: AdversaryView, key) -> DGen:
    """Algorithm 1 lines 5-9: `samples_per_class` per class; keep what f assigns to the
    target class (confidence >= keep_confidence), label it by f."""
    return _label(
        spec, _images(spec, state.generator, key, spec.samples_per_class), global_params, view
    )


def _sample_pool(spec: TrainerSpec, generators, global_params, view: AdversaryView, key) -> DGen:
    """`_sample` from several generators at once (`generators`: their params stacked on a
    leading axis of K): the `samples_per_class` of each class are drawn from all K in turn
    (sample i of a class from generator i mod K, latents from ``fold_in(key, k)``), so
    D_gen keeps its size whatever K is."""
    n = spec.samples_per_class
    k = jax.tree.leaves(generators)[0].shape[0]
    keys = jax.vmap(partial(jax.random.fold_in, key))(jnp.arange(k))
    x = jax.vmap(lambda g, kk: _images(spec, g, kk, -(-n // k)))(generators, keys)
    x = jnp.moveaxis(x, 0, 2)  # [C, ceil(n/K), K, ...]: one sample of each generator in turn
    x = x.reshape(spec.num_classes, -1, *spec.image_shape)[:, :n]
    return _label(spec, x, global_params, view)


def _label(spec: TrainerSpec, x, global_params, view: AdversaryView) -> DGen:
    """D_gen of the generated ``x [classes, n, H, W, C]`` (row c asked for class c)."""
    num_classes, n = x.shape[:2]
    labels = jnp.repeat(jnp.arange(num_classes), n)
    x = x.reshape(num_classes * n, *spec.image_shape)
    probs = jax.nn.softmax(
        training.batched_apply(lambda p, xb: _f(spec, p, xb), global_params, x, spec.batch)
    )
    pred = jnp.argmax(probs, -1)
    keep = view.declared_classes[labels] & (probs.max(-1) >= spec.keep_confidence)
    if spec.filter_target:
        keep = keep & (pred == labels)
    order = jnp.argsort(~keep, stable=True)  # kept records first, in generation order
    return DGen(
        x=x[order],
        y=pred[order],
        soft=probs[order],
        target=labels[order],
        count=keep.sum().astype(jnp.int32),
    )


def mmd2(x: jax.Array, y: jax.Array) -> jax.Array:
    """Biased squared MMD between sample sets ``x [n, d]`` and ``y [m, d]`` (Gretton et
    al. 2012), a sum of Gaussian kernels at 0.5, 1 and 2 times the median squared distance
    within `y`: 0 for the same sets, larger as the distributions part (in mean or spread)."""

    def sq(a, b):
        return jnp.maximum(
            jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None] - 2.0 * a @ b.T, 0.0
        )

    dyy = sq(y, y)
    scale = jnp.median(dyy) + 1e-8

    def k(d):
        return sum(jnp.exp(-d / (s * scale)) for s in (0.5, 1.0, 2.0)).mean()

    return k(sq(x, x)) + k(dyy) - 2.0 * k(sq(x, y))


SELECT_SAMPLES = 64  # per class, generated and real, for own_class_mmd


def own_class_mmd(spec: TrainerSpec, gen_params, view: AdversaryView, key, global_params=None):
    """How far G's samples of the adversary's *own* classes lie from its own records of
    them: `mmd2` per own class (64 of each, drawn from `key`), averaged. In pixel space, or
    with `global_params` in the feature space of the global model f (its penultimate layer,
    the kind of embedding FID and KID measure in), where distances follow what f uses.

    A label-free check for the classes it cannot see: G is one class-conditional network,
    and collapse or drift shows on the classes where the adversary holds real records.
    """
    n, c = SELECT_SAMPLES, spec.num_classes
    gk, rk = jax.random.split(key)
    fake = _images(spec, gen_params, gk, n)
    capacity = view.own_y.shape[0]
    real_row = jnp.arange(capacity) < view.own_count

    def real(cls, k):
        mask = (view.own_y == cls) & real_row
        idx = jax.random.choice(k, capacity, (n,), p=mask / jnp.maximum(mask.sum(), 1))
        return view.own_x[idx], mask.any()

    real_x, held = jax.vmap(real)(jnp.arange(c), jax.random.split(rk, c))

    def embed(x):  # [c, n, H, W, ch] -> [c, n, d]
        if global_params is not None:
            x = _f(spec, global_params, x.reshape(c * n, *spec.image_shape), with_features=True)[1]
        return x.reshape(c, n, -1)

    own = jnp.take(view.declared, view.adversary, axis=-2) & held
    per_class = jnp.where(own, jax.vmap(mmd2)(embed(fake), embed(real_x)), 0.0)
    return jnp.sum(per_class) / jnp.maximum(own.sum(), 1)


def _critic(weights, classifier, critic, image_shape, num_classes) -> nn.Module | None:
    """The student (disagreement: f's architecture) or the real/fake discriminator
    (realism: f's architecture with one logit), or None when no term needs one."""
    if weights["disagreement"] > 0:
        critic = classifier if critic is None else critic
        models.check_classifier(critic, image_shape, num_classes, role="critic")
    elif weights["realism"] > 0:
        critic = classifier.clone(num_classes=1) if critic is None else critic
        models.check_classifier(critic, image_shape, 1, role="critic")
    else:
        critic = None
    return critic


def make_gan_trainer(
    *,
    image_shape: tuple[int, int, int],
    num_classes: int,
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
    realism_classes: str = "declared",
    conv_impl: str = "auto",
    generator: nn.Module | None = None,
    critic: nn.Module | None = None,
) -> GanTrainer:
    """The generator trainer of `mode` against `classifier` (the global model f, a
    `models.Classifier`: checked here) on images `image_shape` of `num_classes` classes.
    `generator` None: `models.generator`; yours maps ``(z [batch, latent_dim], labels
    [batch])`` to ``[batch, *image_shape]`` in [-1, 1]. `critic`: see `_critic`."""
    weights = loss_weights(mode, loss_overrides)
    _check_batch(weights, batch_per_class)
    image_shape = tuple(image_shape)
    features = weights["activation"] > 0  # only this term reads f's features
    models.check_classifier(classifier, image_shape, num_classes, features=features)
    if generator is None:
        generator = models.generator(
            image_shape, num_classes, channels=channels, conv_impl=conv_impl
        )
    models.check_generator(generator, image_shape, latent_dim, batch_per_class * num_classes)
    spec = TrainerSpec(
        weights=weights,
        image_shape=image_shape,
        num_classes=num_classes,
        generator=generator,
        classifier=classifier,
        critic=_critic(weights, classifier, critic, image_shape, num_classes),
        generator_tx=optax.adam(learning_rate, b1=0.5),
        critic_tx=optax.adam(critic_learning_rate, b1=0.5),
        latent_dim=latent_dim,
        batch_per_class=batch_per_class,
        steps_per_round=steps_per_round,
        samples_per_class=samples_per_class,
        keep_confidence=keep_confidence,
        filter_target=filter_target,
        realism_own=checks.choice("realism_classes", realism_classes, REALISM_CLASSES) == "own",
    )
    return _trainer(spec)


def _trainer(spec: TrainerSpec) -> GanTrainer:
    return GanTrainer(
        init=partial(_init, spec),
        update=partial(_update, spec),
        sample=partial(_sample, spec),
        sample_pool=partial(_sample_pool, spec),
        generate=partial(_generate, spec),
        images=partial(_images, spec),
        own_mmd=partial(own_class_mmd, spec),
    )
