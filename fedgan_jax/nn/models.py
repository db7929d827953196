"""Flax modules: the paper's Table II classifiers and the class-conditional generator.

Table II (paper Sec. V-B), 'VALID' convolutions (the Keras default the paper used; the
MNIST net then costs ~9.4 MFLOP per training sample):

* MNIST:    Conv(16, 5x5)+ReLU, MaxPool 2, Conv(32, 5x5)+ReLU, MaxPool 2,
            Dense(1000)+ReLU, Dense(10)                     (536,258 parameters)
* CIFAR-10: Conv(32, 3x3)+ReLU x2, MaxPool 2, Conv(64, 3x3)+ReLU x2, MaxPool 2,
            Dense(512)+ReLU, Dense(10)                      (890,410 parameters)

The softmax of Table II is applied by the losses (logits out).

Why a hand-written `Conv`: simulating a federation means vmapping the training step over
per-client weights. ``jax.vmap`` of a convolution whose kernel is batched lowers to a
grouped convolution, which XLA:CPU runs several times slower than a plain one; and XLA:CPU's
direct convolution is slow for these small 1- and 16-channel layers in the first place.
``impl="im2col"`` builds the patches from kh*kw shifted slices and does one matmul, which
vmaps into a batched matmul and is ~10x faster here (see `experiments/benchmark.py`).
``impl="xla"`` is `lax.conv_general_dilated`, the usual choice on GPU/TPU. Both take the
same parameters as `flax.linen.Conv` (``kernel[kh, kw, in, out]``, ``bias[out]``) and are
tested to agree with it. Max pooling is a reshape + max for the same reason: its gradient is
an elementwise select instead of XLA:CPU's slow ``select_and_scatter``.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import linen as nn
from jax import lax

from fedgan_jax.core import checks
from fedgan_jax.core.errors import ModelError
from fedgan_jax.data.datasets import DatasetSpec, spec_for

CONV_IMPLS = ("auto", "im2col", "xla")


def resolve_conv_impl(impl: str, backend: str | None = None) -> str:
    """'auto' picks im2col on CPU and XLA's native convolution on accelerators."""
    if checks.choice("model.conv_impl", impl, CONV_IMPLS) != "auto":
        return impl
    return "im2col" if (backend or jax.default_backend()) == "cpu" else "xla"


def check_config(model) -> None:
    """Checks ``config.model``; warns when XLA's own convolution is asked for on a CPU."""
    if resolve_conv_impl(model.conv_impl) == "xla" and jax.default_backend() == "cpu":
        logging.warning(
            "model.conv_impl='xla' on a CPU: inside the compiled round XLA:CPU runs the "
            "convolutions' derivatives through a generic loop, 17-20x slower than 'im2col' "
            "(studies/step_levers.py, conv2_xla and convs_xla); 'auto' picks im2col here"
        )


def _patches_sliced(x: jax.Array, kh: int, kw: int) -> jax.Array:
    oh, ow = x.shape[-3] - kh + 1, x.shape[-2] - kw + 1
    return jnp.concatenate(
        [x[..., i : i + oh, j : j + ow, :] for i in range(kh) for j in range(kw)], axis=-1
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def patches(x: jax.Array, kh: int, kw: int) -> jax.Array:
    """im2col: [..., h, w, c] -> [..., oh, ow, kh*kw*c], ordered (i, j, c) like a kernel's
    reshape.

    The value is one gather, which XLA:CPU emits as one copy (the 25 slices and the
    concatenate they feed cost ~1.5x more). Its derivative is the same linear map written
    as slices, so the input gradient (the generator's, the second convolution's)
    transposes to pads and adds, not to the scatter-add a gather's transpose would be.
    Forward and reverse mode both work; values and gradients equal the sliced form's
    to the bit (tests/test_models.py).
    """
    oh, ow = x.shape[-3] - kh + 1, x.shape[-2] - kw + 1
    rows = np.arange(oh)[:, None] + np.arange(kh)[None, :]
    cols = np.arange(ow)[:, None] + np.arange(kw)[None, :]
    p = x[..., rows[:, None, :, None], cols[None, :, None, :], :]  # [..., oh, ow, kh, kw, c]
    return p.reshape(*p.shape[:-3], kh * kw * x.shape[-1])


@patches.defjvp
def _patches_jvp(kh, kw, primals, tangents):
    (x,), (t,) = primals, tangents
    return patches(x, kh, kw), _patches_sliced(t, kh, kw)


def conv_im2col(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """'VALID', stride-1 NHWC convolution as patches @ kernel (one 2-D matmul)."""
    kh, kw, cin, cout = kernel.shape
    cols = patches(x, kh, kw)
    lead = cols.shape[:-1]
    # A 2-D matmul: XLA:CPU runs it ~1.5x faster than the same dot with 3 free dims.
    out = cols.reshape(-1, kh * kw * cin) @ kernel.reshape(kh * kw * cin, cout)
    return out.reshape(*lead, cout)


def conv_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


class Conv(nn.Module):
    """Stride-1 2-D convolution with `flax.linen.Conv`'s parameters and two lowerings."""

    features: int
    kernel_size: tuple[int, int]
    padding: str = "VALID"  # or "SAME"
    impl: str = "im2col"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        if self.padding == "SAME":
            pads = [(0, 0)] * (x.ndim - 3) + [((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)]
            x = jnp.pad(x, pads + [(0, 0)])
        elif self.padding != "VALID":
            raise ValueError(f"padding={self.padding!r}: use 'VALID' or 'SAME'")
        conv = conv_im2col if self.impl == "im2col" else conv_xla
        return conv(x, kernel) + bias


def _windows(x: jax.Array) -> jax.Array:
    """[..., h, w, c] -> [..., h//2, 2, w//2, 2, c] (an odd last row/column is dropped)."""
    *lead, h, w, c = x.shape
    x = x[..., : h - h % 2, : w - w % 2, :]
    return x.reshape(*lead, h // 2, 2, w // 2, 2, c)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, 'VALID' (an odd last row/column is dropped); its
    derivative is `jnp.max`'s (a tie shares the gradient equally). A derivative written
    for XLA:CPU to fuse gave nothing measurable (studies/step_levers.py,
    ``fused_pool_grad``)."""
    with jax.named_scope("max_pool_2x2"):
        return _windows(x).max(axis=(-4, -2))


class MnistCNN(nn.Module):
    """Table II, MNIST column."""

    conv_impl: str = "im2col"
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, *, with_features: bool = False):
        # max-pool, then ReLU: the same function (ReLU is monotone), on a quarter of the
        # elements; 1.05x a client's local training on a 2-core AVX2 CPU, the same
        # parameters to the bit (studies/step_levers.py)
        x = nn.relu(max_pool_2x2(Conv(16, (5, 5), impl=self.conv_impl)(x)))
        x = nn.relu(max_pool_2x2(Conv(32, (5, 5), impl=self.conv_impl)(x)))
        features = nn.relu(nn.Dense(1000)(x.reshape(*x.shape[:-3], -1)))
        logits = nn.Dense(self.num_classes)(features)
        return (logits, features) if with_features else logits


class Cifar10CNN(nn.Module):
    """Table II, CIFAR-10 column."""

    conv_impl: str = "im2col"
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, *, with_features: bool = False):
        for width in (32, 64):
            x = nn.relu(Conv(width, (3, 3), impl=self.conv_impl)(x))
            x = nn.relu(max_pool_2x2(Conv(width, (3, 3), impl=self.conv_impl)(x)))
        features = nn.relu(nn.Dense(512)(x.reshape(*x.shape[:-3], -1)))
        logits = nn.Dense(self.num_classes)(features)
        return (logits, features) if with_features else logits


# The Table II columns; a named dataset picks one (`data.DatasetSpec.architecture`).
ARCHITECTURES = {"mnist": MnistCNN, "cifar10": Cifar10CNN}


def classifier(dataset: str | DatasetSpec, conv_impl: str = "auto") -> nn.Module:
    """The Table II classifier of `dataset` (a registered name, or a `DatasetSpec`): its
    architecture's column with the dataset's class count."""
    spec = spec_for(dataset) if isinstance(dataset, str) else dataset
    arch = checks.choice("architecture", spec.architecture, ARCHITECTURES, ModelError)
    return ARCHITECTURES[arch](conv_impl=resolve_conv_impl(conv_impl), num_classes=spec.num_classes)


class Classifier(Protocol):
    """The contract of every classifier the core trains or queries: the global model f
    (clients, FedAvg, the adversary's frozen discriminator), the attack classifier and
    the generator's critic. `check_classifier` checks it and names what is missing.

    * A `flax.linen.Module` whose ``init(key, x)`` holds only a ``params`` collection
      (no batch statistics, no dropout rngs): the core calls ``apply({"params": p}, x)``
      and vmaps it over clients and runs.
    * ``__call__(x)``: images ``[batch, H, W, C]`` float32 in [-1, 1] to logits
      ``[batch, num_classes]`` (the losses apply the softmax).
    * ``__call__(x, with_features=True)`` returns ``(logits, features [batch, F])``:
      needed only by the generator's ``activation`` term (gan mode ``dafl``).
    * A field ``num_classes: int``. The ``prior`` mode's real/fake critic is
      ``classifier.clone(num_classes=1)`` unless `gan.make_gan_trainer` gets ``critic=``.
    """

    num_classes: int

    def __call__(self, x: jax.Array, *, with_features: bool = False) -> Any: ...


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def check_classifier(
    model: Any,
    image_shape: tuple[int, ...],
    num_classes: int | None = None,
    *,
    features: bool = False,
    role: str = "classifier",
) -> None:
    """Checks that `model` follows `Classifier` on images `image_shape` (abstractly, with
    `jax.eval_shape`: nothing is computed); `ModelError` naming what is missing."""
    name = f"{role} {type(model).__name__}"
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name}: is not a flax.linen.Module (the core calls init / apply)")
    have = getattr(model, "num_classes", None)
    if isinstance(have, bool) or not isinstance(have, int):
        raise ModelError(f"{name}: has no integer field num_classes (models.Classifier)")
    if num_classes is not None and have != num_classes:
        raise ModelError(f"{name}: num_classes={have}, but the data has {num_classes} classes")
    x = jax.ShapeDtypeStruct((2, *image_shape), jnp.float32)
    try:
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
    except Exception as e:  # a user's module may raise anything on a wrong shape
        raise ModelError(
            f"{name}: init on images {tuple(image_shape)} fails: {_first_line(e)}"
        ) from e
    if extra := sorted(set(variables) - {"params"}):
        raise ModelError(
            f"{name}: holds collections {extra} besides params; the core "
            "applies it with params only (models.Classifier)"
        )
    logits = _abstract_apply(name, model, variables["params"], x, {})
    _check_logits(name, logits, have)
    if features:
        out = _abstract_apply(name, model, variables["params"], x, {"with_features": True})
        if not (isinstance(out, tuple) and len(out) == 2 and len(out[1].shape) == 2):
            raise ModelError(
                f"{name}: with_features=True must return (logits, features "
                "[batch, F]) for the generator's activation term"
            )
        _check_logits(name, out[0], have)


def _abstract_apply(name: str, model, params, x, kwargs: dict):
    try:
        return jax.eval_shape(lambda p, xb: model.apply({"params": p}, xb, **kwargs), params, x)
    except TypeError as e:
        if kwargs and "with_features" in str(e):
            raise ModelError(
                f"{name}: __call__ takes no with_features=True, which the "
                "generator's activation term (gan mode dafl) needs"
            ) from None
        raise ModelError(f"{name}: apply fails: {_first_line(e)}") from None
    except Exception as e:  # a user's module may raise anything
        raise ModelError(f"{name}: apply fails: {_first_line(e)}") from None


def _check_logits(name: str, logits, num_classes: int) -> None:
    shape = getattr(logits, "shape", None)
    if shape != (2, num_classes):
        raise ModelError(
            f"{name}: returns {shape if shape is not None else type(logits).__name__} "
            f"for a batch of 2, expected logits (2, {num_classes})"
        )


def check_generator(model: Any, image_shape: tuple[int, ...], latent_dim: int, batch: int) -> None:
    """Checks a generator: a flax module with only ``params`` that maps ``(z [batch,
    latent_dim], labels [batch] int32)`` to images ``[batch, *image_shape]``."""
    name = f"generator {type(model).__name__}"
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name}: is not a flax.linen.Module (the core calls init / apply)")
    z = jax.ShapeDtypeStruct((batch, latent_dim), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    try:
        variables = jax.eval_shape(model.init, jax.random.key(0), z, labels)
        out = jax.eval_shape(lambda v, a, b: model.apply(v, a, b), variables, z, labels)
    except Exception as e:  # a user's module may raise anything
        raise ModelError(f"{name}: (z, labels) -> images fails: {_first_line(e)}") from e
    if extra := sorted(set(variables) - {"params"}):
        raise ModelError(f"{name}: holds collections {extra} besides params")
    want = (batch, *image_shape)
    if getattr(out, "shape", None) != want:
        got = getattr(out, "shape", type(out).__name__)
        raise ModelError(f"{name}: returns {got} for {batch} latents, expected images {want}")


def _batch_standardize(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Batch normalisation with batch statistics only (no running averages to carry)."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axes, keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps)


class BatchStd(nn.Module):
    """`_batch_standardize` with a learned scale and offset (BatchNorm in train mode)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones_init(), (x.shape[-1],))
        bias = self.param("bias", nn.initializers.zeros_init(), (x.shape[-1],))
        return _batch_standardize(x) * scale + bias


def _upsample2x(x: jax.Array) -> jax.Array:
    return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)


class Generator(nn.Module):
    """Class-conditional DCGAN-style generator G(z, y): R^latent x classes -> [-1, 1]^image.

    One generator conditioned on a one-hot label, rather than one generator per class:
    the classes share stroke/texture features (few parameters, one optax state), and a
    batch that mixes all classes is a plain convolution, not the grouped one that
    vmapping per-class weights would give (slow on CPU; see `Conv`).
    Normalisation uses batch statistics, as DCGAN/DAFL generators do in training, so the
    module has no mutable state.
    """

    image_shape: tuple[int, int, int]
    num_classes: int = 10
    channels: int = 64
    conv_impl: str = "im2col"

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array) -> jax.Array:
        h, w, c = self.image_shape
        s = h // 4
        if s * 4 != h or h != w:
            raise ValueError(f"image_shape={self.image_shape}: need square, divisible by 4")
        x = jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], -1)
        x = nn.Dense(s * s * self.channels)(x).reshape(*z.shape[:-1], s, s, self.channels)
        x = nn.relu(BatchStd()(x))
        for width in (self.channels // 2, self.channels // 4):
            x = Conv(width, (3, 3), padding="SAME", impl=self.conv_impl)(_upsample2x(x))
            x = nn.relu(BatchStd()(x))
        x = Conv(c, (3, 3), padding="SAME", impl=self.conv_impl)(x)
        return jnp.tanh(x)


def generator(
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    channels: int = 64,
    conv_impl: str = "auto",
) -> Generator:
    """The class-conditional generator of images `image_shape` (square, side divisible by
    4) over `num_classes` classes."""
    h, w, _ = image_shape
    if h != w or h % 4:
        raise ModelError(
            f"image_shape={tuple(image_shape)}: the generator needs square images whose "
            "side is divisible by 4; pass your own (gan.make_gan_trainer(generator=...))"
        )
    return Generator(
        image_shape=tuple(image_shape),
        num_classes=num_classes,
        channels=channels,
        conv_impl=resolve_conv_impl(conv_impl),
    )


def init_params(module: nn.Module, key: jax.Array, *example_inputs) -> dict:
    """The module's 'params' collection for `example_inputs`."""
    return module.init(key, *example_inputs)["params"]


def param_count(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
