"""Table II classifiers, the two convolution lowerings, pooling and the generator."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from fedgan_jax.nn import models


@pytest.mark.parametrize(
    "dataset, shape, count",
    [
        # MNIST: 5*5*1*16+16 + 5*5*16*32+32 + 4*4*32*1000+1000 + 1000*10+10
        ("mnist", (28, 28, 1), 416 + 12_832 + 513_000 + 10_010),
        # CIFAR-10: 896 + 9,248 + 18,496 + 36,928 + 5*5*64*512+512 + 512*10+10
        ("cifar10", (32, 32, 3), 896 + 9_248 + 18_496 + 36_928 + 819_712 + 5_130),
    ],
)
def test_table_ii_parameter_counts(dataset, shape, count):
    model = models.classifier(dataset)
    params = models.init_params(model, jax.random.key(0), jnp.zeros((1, *shape)))
    assert models.param_count(params) == count
    assert count == {"mnist": 536_258, "cifar10": 890_410}[dataset]
    logits, features = model.apply({"params": params}, jnp.zeros((3, *shape)), with_features=True)
    chex.assert_shape(logits, (3, 10))
    chex.assert_shape(features, (3, 1000 if dataset == "mnist" else 512))


@pytest.mark.parametrize("impl", ["im2col", "xla"])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize("kernel", [(5, 5), (3, 3), (2, 4)])
def test_conv_matches_flax_conv(impl, padding, kernel):
    x = jax.random.normal(jax.random.key(0), (2, 11, 10, 3))
    reference = nn.Conv(7, kernel, padding=padding)
    params = reference.init(jax.random.key(1), x)
    ours = models.Conv(7, kernel, padding=padding, impl=impl)
    chex.assert_trees_all_close(
        ours.apply(params, x), reference.apply(params, x), rtol=1e-5, atol=1e-5
    )
    # Same parameter tree: checkpoints move between lowerings and flax.
    chex.assert_trees_all_equal_shapes(ours.init(jax.random.key(1), x), params)


def test_lowerings_agree_under_vmap_over_client_weights():
    """The engine vmaps a training step over per-client kernels: both paths agree."""
    model_a = models.classifier("mnist", "im2col")
    model_b = models.classifier("mnist", "xla")
    keys = jax.random.split(jax.random.key(0), 3)
    params = jax.vmap(lambda k: models.init_params(model_a, k, jnp.zeros((1, 28, 28, 1))))(keys)
    x = jax.random.normal(jax.random.key(1), (3, 4, 28, 28, 1))

    def grad_of(model):
        def loss(p, xb):
            return jnp.sum(model.apply({"params": p}, xb) ** 2)

        return jax.vmap(jax.grad(loss))(params, x)

    chex.assert_trees_all_close(grad_of(model_a), grad_of(model_b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 9, 7, 1), (3, 2, 5, 6, 4)])
def test_max_pool_matches_flax(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    expected = nn.max_pool(flat, (2, 2), strides=(2, 2), padding="VALID")
    out = models.max_pool_2x2(x)
    np.testing.assert_array_equal(out, expected.reshape(*lead, *expected.shape[1:]))
    # Gradients agree too (continuous inputs: no ties).
    g_ours = jax.grad(lambda a: jnp.sum(models.max_pool_2x2(a) ** 2))(flat)
    g_flax = jax.grad(lambda a: jnp.sum(nn.max_pool(a, (2, 2), (2, 2), "VALID") ** 2))(flat)
    np.testing.assert_allclose(g_ours, g_flax, rtol=1e-6)


@pytest.mark.parametrize("shape, kh, kw", [((2, 12, 12, 16), 5, 5), ((3, 2, 9, 7, 1), 3, 2)])
def test_gathered_patches_equal_sliced_ones_in_value_and_derivatives(shape, kh, kw):
    """`models.patches` (one gather, its derivative written as slices) is the sliced
    im2col to the bit: value, input gradient (pads and adds) and forward mode."""
    x = jax.random.normal(jax.random.key(0), shape)
    t = jax.random.normal(jax.random.key(1), shape)
    ours, sliced = jax.jit(models.patches, static_argnums=(1, 2)), models._patches_sliced
    np.testing.assert_array_equal(ours(x, kh, kw), sliced(x, kh, kw))
    w = jax.random.normal(jax.random.key(2), ours(x, kh, kw).shape)

    def input_grad(f):
        return jax.jit(jax.grad(lambda a: jnp.sum(jnp.sin(f(a, kh, kw)) * w)))(x)

    np.testing.assert_array_equal(input_grad(models.patches), input_grad(sliced))
    _, tangent = jax.jvp(lambda a: models.patches(a, kh, kw), (x,), (t,))
    np.testing.assert_array_equal(tangent, sliced(t, kh, kw))


def test_resolve_conv_impl():
    assert models.resolve_conv_impl("auto", "cpu") == "im2col"
    assert models.resolve_conv_impl("auto", "gpu") == "xla"
    assert models.resolve_conv_impl("xla", "cpu") == "xla"
    with pytest.raises(ValueError, match="model.conv_impl"):
        models.resolve_conv_impl("winograd")


@pytest.mark.parametrize("dataset, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_generator_shapes_range_and_conditioning(dataset, shape):
    gen = models.generator(shape, 10, channels=16)
    z = jax.random.normal(jax.random.key(0), (20, 100))
    labels = jnp.arange(20) % 10
    params = models.init_params(gen, jax.random.key(1), z, labels)
    x = gen.apply({"params": params}, z, labels)
    chex.assert_shape(x, (20, *shape))
    assert float(jnp.abs(x).max()) <= 1.0
    # The label reaches the output: same z, other label, other image.
    x2 = gen.apply({"params": params}, z, (labels + 1) % 10)
    assert float(jnp.abs(x - x2).mean()) > 1e-4
