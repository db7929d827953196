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
``loss.diversity`` > 0. A mode is a preset of loss weights that ``config.gan.loss``
may override (`gan_config.py`).

The generator's code, one module per part (each imports only those listed before it,
`gan_sampling`'s type annotation of `GanState` aside):

* `gan_config.py`: ``config.gan``: the modes and their loss-weight presets, `loss_weights`,
  `objective_name`, `check_config`. Plain Python.
* `gan_objective.py`: `TrainerSpec` (everything static about one trainer), G and f
  applied, and the loss: every term, the generator's loss, the critic's loss.
* `gan_sampling.py`: G's images per class, and D_gen (`DGen`, `sample`, `sample_pool`).
* `gan_selection.py`: the own-class MMD that picks the generator D_gen is drawn from.
* `gan.py`, this module: the trainer's state (`GanState`), its steps (one generator step,
  then one critic step; a round's `lax.scan`) and `make_gan_trainer`, which checks its
  arguments, builds the `TrainerSpec` and binds every function to it (`GanTrainer`, optax
  style: init / update / sample).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct
from jax import lax

from fedgan_jax.adversary import gan_objective, gan_sampling, gan_selection
from fedgan_jax.adversary.gan_config import REALISM_CLASSES, check_batch, loss_weights
from fedgan_jax.adversary.gan_objective import TrainerSpec, balanced_labels
from fedgan_jax.adversary.gan_sampling import DGen
from fedgan_jax.adversary.view import AdversaryView
from fedgan_jax.core import checks
from fedgan_jax.core.types import Params
from fedgan_jax.nn import models


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


class GanTrainer(NamedTuple):
    """Pure functions of one generator trainer (optax style: init / update / sample)."""

    init: Callable[..., GanState]  # (key, view) -> state
    update: Callable[..., tuple[GanState, dict]]  # (state, global_params, view, key)
    sample: Callable[..., DGen]  # (state, global_params, view, key) -> D_gen
    sample_pool: Callable[..., DGen]  # (generators [K, ...], global_params, view, key)
    generate: Callable[..., jax.Array]  # (generator_params, z, labels) -> images
    images: Callable[..., jax.Array]  # (generator_params, key, per_class) -> [C, n, H, W, ch]
    own_mmd: Callable[..., jax.Array]  # (generator_params, view, key) -> [] (`own_class_mmd`)


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


def _critic_step(spec: TrainerSpec, state: GanState, x, logits, view, key, w_real):
    """One optax step of the critic on the samples G just produced."""
    x = lax.stop_gradient(x)
    c_loss, c_grads = jax.value_and_grad(partial(gan_objective.critic_loss, spec))(
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
    loss = partial(gan_objective.generator_loss, spec)
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
    check_batch(weights, batch_per_class)
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
        sample=partial(gan_sampling.sample, spec),
        sample_pool=partial(gan_sampling.sample_pool, spec),
        generate=partial(gan_objective.generate, spec),
        images=partial(gan_sampling.images, spec),
        own_mmd=partial(gan_selection.own_class_mmd, spec),
    )
