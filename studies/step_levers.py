"""Model-level speed levers for one client's local training.

    python studies/step_levers.py [--steps=20] [--repeats=7]

`studies/levers.py` varies XLA's flags around the whole round; this varies how the
Table II MNIST network itself is written, on the part that dominates the round: one
client's ``--steps`` SGD minibatches of 64 in one jitted `lax.scan`. Variants:

* ``engine``: `models.MnistCNN` as it ships (im2col patches by one gather whose
  derivative is written as slices; max-pool, then ReLU);
* ``sliced_patches``: im2col patches as 25 slices and a concatenate (the engine before
  the gather);
* ``fused_pool_grad``: max-pool with `jnp.max`'s derivative written for XLA:CPU to fuse
  (the ties counted by four compares of strided slices, not a float mask reduced apart);
* ``relu_then_pool``: ReLU before max-pool, the order of Table II (the same function:
  ReLU is monotone);
* ``dx_as_conv``: the second convolution's input gradient as one im2col matmul of the
  padded output gradient with the flipped kernel (`jax.custom_vjp`), in place of the
  transpose of im2col's slices (pads and adds);
* ``row_shift``: the second convolution as im2col along the width only, one matmul to
  all five row offsets at once (a 160-wide output instead of 32) and five shifted adds;
* ``conv2_xla``, ``convs_xla``: the second (or both) convolutions as XLA's own
  (`lax.conv_general_dilated`, what `flax.linen.Conv` lowers to);
* ``conv2_xla_canonical``, ``convs_xla_canonical``: the same with the derivative written
  as convolutions in the layout XLA:CPU's convolution kernels take (NHWC x HWIO; the
  kernel gradient with the channels as the batch), by `jax.custom_vjp`. Inside a loop,
  XLA:CPU leaves the transposed convolutions it derives itself in other layouts and runs
  them through a generic loop;
* ``donated``: the engine's network with the parameters' buffers donated to the step;
* ``bf16_dense``, ``bf16_matmuls``, ``bf16_activations``: bf16 compute (for CPUs with
  AVX512_BF16 or AMX). The dense layers' matmul operands in bf16 (f32 accumulation);
  every matmul's operands (the im2col patches and the dense inputs) in bf16; or the
  activations themselves in bf16 from the input on (parameters stay f32, the logits
  come back as f32). Not the engine's function: they end within bf16 rounding of it.

All variants run the same steps from the same parameters, interleaved, medians of
``--repeats`` calls; it prints each one's largest parameter difference from ``engine``
after the steps (0 or float rounding: the same function) and its speed ratio.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from flax import linen as nn  # noqa: E402

from fedgan_jax.driver.outputs import cpu_info  # noqa: E402
from fedgan_jax.nn import models  # noqa: E402

_STEPS = flags.DEFINE_integer("steps", 20, "Local SGD steps per timed call.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed calls per variant (median).")
BATCH = 64


def conv_sliced(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`models.conv_im2col` with its patches as 25 slices and a concatenate."""
    kh, kw, cin, cout = kernel.shape
    cols = models._patches_sliced(x, kh, kw)
    return (cols.reshape(-1, kh * kw * cin) @ kernel.reshape(-1, cout)).reshape(
        *cols.shape[:-1], cout
    )


def _input_gradient(conv, g: jax.Array, kernel: jax.Array) -> jax.Array:
    """A 'VALID' convolution's input gradient as `conv` of the output gradient, padded by
    the kernel's size less one, with the kernel flipped and its channels swapped."""
    kh, kw = kernel.shape[:2]
    pads = [(0, 0)] * (g.ndim - 3) + [(kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)]
    return conv(jnp.pad(g, pads), kernel[::-1, ::-1].transpose(0, 1, 3, 2))


def conv_dx_as_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`models.conv_im2col` whose input gradient is itself an im2col convolution."""

    @jax.custom_vjp
    def conv(x, kernel):
        return models.conv_im2col(x, kernel)

    def forward(x, kernel):
        return models.conv_im2col(x, kernel), (x, kernel)

    def backward(saved, g):
        x, kernel = saved
        kh, kw, cin, cout = kernel.shape
        cols = models.patches(x, kh, kw)
        dk = cols.reshape(-1, kh * kw * cin).T @ g.reshape(-1, cout)
        return _input_gradient(models.conv_im2col, g, kernel), dk.reshape(kernel.shape)

    conv.defvjp(forward, backward)
    return conv(x, kernel)


def conv_row_shift(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """im2col along the width only; one matmul gives every row offset's contribution
    ([..., h, ow, kh, cout]) and the output sums them shifted by their offset."""
    kh, kw, cin, cout = kernel.shape
    h, ow = x.shape[-3], x.shape[-2] - kw + 1
    rows = jnp.concatenate([x[..., :, j : j + ow, :] for j in range(kw)], axis=-1)
    per_row = rows.reshape(-1, kw * cin) @ kernel.transpose(1, 2, 0, 3).reshape(kw * cin, -1)
    per_row = per_row.reshape(*rows.shape[:-1], kh, cout)
    return sum(per_row[..., i : i + h - kh + 1, :, i, :] for i in range(kh))


@jax.custom_jvp
def pool_fused_grad(x: jax.Array) -> jax.Array:
    """`models.max_pool_2x2` whose derivative (`jnp.max`'s: a tie shares the gradient
    equally) counts the ties with four compares of strided slices, for XLA:CPU to fuse,
    instead of a float mask reduced apart."""
    return models._windows(x).max(axis=(-4, -2))


@pool_fused_grad.defjvp
def _pool_fused_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    windows = models._windows(x)
    out = windows.max(axis=(-4, -2))
    ties = sum((windows[..., :, a, :, b, :] == out).astype(x.dtype) for a in (0, 1) for b in (0, 1))
    hit = windows == out[..., :, None, :, None, :]
    return out, jnp.where(hit, models._windows(t), 0).sum(axis=(-4, -2)) / ties


def _bf16_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    bf16 = jnp.bfloat16
    return jnp.dot(a.astype(bf16), b.astype(bf16), preferred_element_type=jnp.float32)


def conv_bf16(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`models.conv_im2col` with the matmul's operands in bf16, accumulated in f32."""
    kh, kw, cin, cout = kernel.shape
    cols = models.patches(x, kh, kw)
    out = _bf16_matmul(cols.reshape(-1, kh * kw * cin), kernel.reshape(-1, cout))
    return out.reshape(*cols.shape[:-1], cout)


@jax.custom_vjp
def conv_xla_canonical(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`models.conv_xla` whose input and kernel gradients are themselves NHWC x HWIO
    convolutions."""
    return models.conv_xla(x, kernel)


def _canonical_forward(x, kernel):
    return models.conv_xla(x, kernel), (x, kernel)


def _canonical_backward(saved, g):
    x, kernel = saved
    # the kernel gradient: input channels as the batch, the batch as the features
    dk = models.conv_xla(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3))  # [in, kh, kw, out]
    return _input_gradient(models.conv_xla, g, kernel), dk.transpose(1, 2, 0, 3)


conv_xla_canonical.defvjp(_canonical_forward, _canonical_backward)


CONVS = {
    "im2col": models.conv_im2col,
    "xla": models.conv_xla,
    "xla_canonical": conv_xla_canonical,
    "bf16": conv_bf16,
    "sliced": conv_sliced,
    "dx_as_conv": conv_dx_as_conv,
    "row_shift": conv_row_shift,
}


class _Conv(nn.Module):
    """`models.Conv` ('VALID') written as ``CONVS[impl]``."""

    features: int
    impl: str = "im2col"

    @nn.compact
    def __call__(self, x):
        shape = (5, 5, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)  # bf16 activations
        return CONVS[self.impl](x, kernel) + bias


class _Dense(nn.Module):
    """`flax.linen.Dense`'s parameters; its matmul's operands in bf16 if ``bf16``."""

    features: int
    bf16: bool = False

    @nn.compact
    def __call__(self, x):
        shape = (x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        if self.bf16:
            return _bf16_matmul(x, kernel) + bias
        return x @ kernel.astype(x.dtype) + bias.astype(x.dtype)


class Variant(nn.Module):
    """Table II MNIST, the parameter tree of `models.MnistCNN`, written another way."""

    conv1: str = "im2col"
    conv2: str = "im2col"
    fused_pool_grad: bool = False
    relu_then_pool: bool = False
    bf16_dense: bool = False
    activations: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        pool = pool_fused_grad if self.fused_pool_grad else models.max_pool_2x2
        x = x.astype(self.activations)
        for name, width, impl in (("Conv_0", 16, self.conv1), ("Conv_1", 32, self.conv2)):
            y = _Conv(width, impl=impl, name=name)(x)
            x = pool(nn.relu(y)) if self.relu_then_pool else nn.relu(pool(y))
        x = nn.relu(_Dense(1000, self.bf16_dense, name="Dense_0")(x.reshape(x.shape[0], -1)))
        return _Dense(10, self.bf16_dense, name="Dense_1")(x).astype(jnp.float32)


def local_training(module: nn.Module, donate: bool = False):
    """``steps`` SGD minibatches (lr 0.05) in one jitted scan: a client's local update."""

    def loss(params, x, y):
        logits = module.apply({"params": params}, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    def train(params, xs, ys):
        def step(params, batch):
            grads = jax.grad(loss)(params, *batch)
            return jax.tree.map(lambda p, g: p - 0.05 * g, params, grads), None

        return jax.lax.scan(step, params, (xs, ys))[0]

    return jax.jit(train, donate_argnums=(0,) if donate else ())


VARIANTS = {
    "engine": (models.MnistCNN(conv_impl="im2col"), False),
    "sliced_patches": (Variant(conv1="sliced", conv2="sliced"), False),
    "fused_pool_grad": (Variant(fused_pool_grad=True), False),
    "relu_then_pool": (Variant(relu_then_pool=True), False),
    "dx_as_conv": (Variant(conv2="dx_as_conv"), False),
    "row_shift": (Variant(conv2="row_shift"), False),
    "conv2_xla": (Variant(conv2="xla"), False),
    "convs_xla": (Variant(conv1="xla", conv2="xla"), False),
    "conv2_xla_canonical": (Variant(conv2="xla_canonical"), False),
    "convs_xla_canonical": (Variant(conv1="xla_canonical", conv2="xla_canonical"), False),
    "donated": (models.MnistCNN(conv_impl="im2col"), True),
    "bf16_dense": (Variant(bf16_dense=True), False),
    "bf16_matmuls": (Variant(conv1="bf16", conv2="bf16", bf16_dense=True), False),
    "bf16_activations": (Variant(activations=jnp.bfloat16), False),
}


def main(argv):
    del argv
    key = jax.random.key(0)
    xs = jax.random.normal(key, (_STEPS.value, BATCH, 28, 28, 1))
    ys = jax.random.randint(key, (_STEPS.value, BATCH), 0, 10)
    params = models.init_params(VARIANTS["engine"][0], key, xs[0])
    copy = jax.jit(lambda p: jax.tree.map(jnp.copy, p))
    train = {name: local_training(m, donate) for name, (m, donate) in VARIANTS.items()}
    final = {name: fn(copy(params), xs, ys) for name, fn in train.items()}
    times = {name: [] for name in train}
    for _ in range(_REPEATS.value):
        for name, fn in train.items():
            start = copy(params)
            jax.block_until_ready(start)
            tic = time.perf_counter()
            jax.block_until_ready(fn(start, xs, ys))
            times[name].append(time.perf_counter() - tic)
    cpu = cpu_info()
    print(
        f"CPU: {cpu['model']} ({', '.join(cpu.get('isa', []))}), jax {jax.__version__}, "
        f"{_STEPS.value} steps of {BATCH}, medians of {_REPEATS.value}"
    )
    base = np.median(times["engine"])
    print("| variant | ms per client | samples/s | ratio to engine | max param diff |")
    print("|---|---|---|---|---|")
    for name, t in times.items():
        diff = max(
            float(jnp.abs(a - b).max())
            for a, b in zip(
                jax.tree.leaves(final["engine"]), jax.tree.leaves(final[name]), strict=True
            )
        )
        med = np.median(t)
        print(
            f"| {name} | {med * 1e3:.1f} | {_STEPS.value * BATCH / med:,.0f} | "
            f"{base / med:.3f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    app.run(main)
