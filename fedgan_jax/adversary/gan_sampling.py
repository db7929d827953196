"""What the adversary draws from a generator: images per class and D_gen (Algorithm 1).

`images` generates ``[classes, per_class, H, W, C]`` in training-shaped balanced batches
(the figures' grids, `gan_selection.own_class_mmd`). `sample` builds D_gen (Algorithm 1
lines 5-9) after the federation: samples that f assigns to their target class (with an
optional confidence), labelled by f itself, ``y = f(x_gen)``; `sample_pool` does the same
from several generators at once. Functions of a `gan_objective.TrainerSpec`, bound by
`gan.make_gan_trainer`.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from fedgan_jax.adversary.gan_objective import TrainerSpec, balanced_labels, frozen_f, generate
from fedgan_jax.adversary.view import AdversaryView
from fedgan_jax.nn import training

if TYPE_CHECKING:
    from fedgan_jax.adversary.gan import GanState


@struct.dataclass
class DGen:
    """Generated training set of the attack classifier; records 0..count-1 are kept."""

    x: jax.Array  # [n, H, W, C]
    y: jax.Array  # [n] f's label, argmax f(x)
    soft: jax.Array  # [n, classes] f's probabilities
    target: jax.Array  # [n] the class G was asked for
    count: jax.Array  # [] kept records (f agrees with the target, confident enough)


def images(spec: TrainerSpec, gen_params, key, per_class: int) -> jax.Array:
    """`per_class` samples of every class, ``[classes, per_class, H, W, C]``.

    Generated in training-shaped balanced batches: the generator normalises with batch
    statistics, so it sees batches like the ones it was trained on.
    """
    bpc, num_classes = spec.batch_per_class, spec.num_classes
    chunks = -(-per_class // bpc)
    z = jax.random.normal(key, (chunks, spec.batch, spec.latent_dim))
    labels = balanced_labels(num_classes, bpc)
    x = lax.map(lambda zc: generate(spec, gen_params, zc, labels), z)
    # [chunks, batch_per_class * C, ...] with labels 0..C-1 repeating -> per class
    x = x.reshape(chunks * bpc, num_classes, *spec.image_shape)
    return jnp.swapaxes(x, 0, 1)[:, :per_class]


def sample(spec: TrainerSpec, state: GanState, global_params, view: AdversaryView, key) -> DGen:
    """Algorithm 1 lines 5-9: `samples_per_class` per class; keep what f assigns to the
    target class (confidence >= keep_confidence), label it by f."""
    return _label(
        spec, images(spec, state.generator, key, spec.samples_per_class), global_params, view
    )


def sample_pool(spec: TrainerSpec, generators, global_params, view: AdversaryView, key) -> DGen:
    """`sample` from several generators at once (`generators`: their params stacked on a
    leading axis of K): the `samples_per_class` of each class are drawn from all K in turn
    (sample i of a class from generator i mod K, latents from ``fold_in(key, k)``), so
    D_gen keeps its size whatever K is."""
    n = spec.samples_per_class
    k = jax.tree.leaves(generators)[0].shape[0]
    keys = jax.vmap(partial(jax.random.fold_in, key))(jnp.arange(k))
    x = jax.vmap(lambda g, kk: images(spec, g, kk, -(-n // k)))(generators, keys)
    x = jnp.moveaxis(x, 0, 2)  # [C, ceil(n/K), K, ...]: one sample of each generator in turn
    x = x.reshape(spec.num_classes, -1, *spec.image_shape)[:, :n]
    return _label(spec, x, global_params, view)


def _label(spec: TrainerSpec, x, global_params, view: AdversaryView) -> DGen:
    """D_gen of the generated ``x [classes, n, H, W, C]`` (row c asked for class c)."""
    num_classes, n = x.shape[:2]
    labels = jnp.repeat(jnp.arange(num_classes), n)
    x = x.reshape(num_classes * n, *spec.image_shape)
    probs = jax.nn.softmax(
        training.batched_apply(lambda p, xb: frozen_f(spec, p, xb), global_params, x, spec.batch)
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
