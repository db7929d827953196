"""DP accounting (privacy.py) against hand-called dp-accounting, and DP-SGD's per-example
clipping (training.private_gradient) against hand-computed gradients."""

import math

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from dp_accounting import rdp

from fedgan_jax.core.errors import ConfigError
from fedgan_jax.driver import config_lib
from fedgan_jax.federation import privacy
from fedgan_jax.nn import training
from tests.conftest import tiny_config

REPLACE_ONE = dp_accounting.NeighboringRelation.REPLACE_ONE


def _by_hand(event, delta):
    return rdp.RdpAccountant(neighboring_relation=REPLACE_ONE).compose(event).get_epsilon(delta)


def test_user_level_everyone_trains_is_composed_gaussians():
    """z = 1, all 5 of 5 every round, 20 rounds: 20 Gaussians of z/2 (sensitivity 2C)."""
    got = privacy.report(
        delta=1e-5, rounds=20, num_participants=5, clients_per_round=5, noise_multiplier=1.0
    )
    gaussian = dp_accounting.GaussianDpEvent(0.5)
    expected = _by_hand(dp_accounting.SelfComposedDpEvent(gaussian, 20), 1e-5)
    assert got["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert got["delta"] == 1e-5 and got["record_level"] is None
    # The classic conversion (Mironov 2017) bounds it: min_a T a / (2 s^2) + log(1/d)/(a-1).
    classic = min(
        20 * a / (2 * 0.25) + math.log(1e5) / (a - 1) for a in np.linspace(1.01, 50, 5000)
    )
    assert expected <= classic


def test_user_level_fixed_size_sampling_takes_the_tighter_valid_bound():
    """z = 3, 10 of 100 participants a round, 200 rounds, delta 1e-6."""
    got = privacy.report(
        delta=1e-6, rounds=200, num_participants=100, clients_per_round=10, noise_multiplier=3.0
    )
    gaussian = dp_accounting.GaussianDpEvent(1.5)
    wor = dp_accounting.SampledWithoutReplacementDpEvent(100, 10, gaussian)
    sampled = _by_hand(dp_accounting.SelfComposedDpEvent(wor, 200), 1e-6)
    plain = _by_hand(dp_accounting.SelfComposedDpEvent(gaussian, 200), 1e-6)
    assert sampled < plain  # at q = 0.1 sampling amplifies
    assert got["epsilon"] == pytest.approx(sampled, rel=1e-9)
    assert got["user_level"]["clients_per_round"] == 10


def test_record_level_dpsgd_is_accounted_per_epoch_and_per_sampled_batch():
    got = privacy.report(
        delta=1e-5,
        rounds=3,
        num_participants=5,
        clients_per_round=5,
        dpsgd_noise_multiplier=2.0,
        local_epochs=2,
        batch_size=32,
        victim_records=80,
    )
    gaussian = dp_accounting.GaussianDpEvent(1.0)
    per_epoch = _by_hand(dp_accounting.SelfComposedDpEvent(gaussian, 6), 1e-5)
    wor = dp_accounting.SampledWithoutReplacementDpEvent(80, 32, gaussian)
    sampled = _by_hand(dp_accounting.SelfComposedDpEvent(wor, 6 * 3), 1e-5)  # 3 steps/epoch
    assert got["epsilon"] == pytest.approx(per_epoch, rel=1e-9)
    assert got["record_level"]["epsilon_sampled_batches"] == pytest.approx(
        min(sampled, _by_hand(dp_accounting.SelfComposedDpEvent(gaussian, 18), 1e-5))
    )
    assert got["user_level"] is None


def test_no_noise_no_epsilon():
    got = privacy.report(delta=1e-5, rounds=3, num_participants=5, clients_per_round=5)
    assert got["epsilon"] is None and got["user_level"] is None and got["record_level"] is None


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("dp_delta", 0.0, r"^fl.dp_delta=0.0: "),
        ("dp_delta", 1.5, r"^fl.dp_delta=1.5: "),
        ("dpsgd_noise_multiplier", 1.0, "needs fl.dpsgd_clip > 0"),
        ("dpsgd_clip", -1.0, r"^fl.dpsgd_clip=-1.0: "),
    ],
)
def test_config_rejects_bad_dp_fields(field, value, match):
    config = tiny_config()
    config.fl[field] = value
    with pytest.raises(ConfigError, match=match):
        config_lib.validate(config)


# --------------------------------------------------------------------------- DP-SGD


def _linear(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2, 2, 1)).astype(np.float32)
    x[2] *= 100.0  # an outlier whose gradient dwarfs the others'
    y = np.array([0, 1, 2, 0, 1, 2], np.int32)
    params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.zeros(3)}
    return params, jnp.asarray(x), jnp.asarray(y)


def _record_grad(params, x, y, i):
    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(
            _linear(p, x[i : i + 1]), y[i : i + 1]
        )[0]

    return jax.grad(loss)(params)


def test_per_example_clipping_bounds_each_records_contribution():
    params, x, y = _problem()
    clip, batch = 1.0, 8
    grad = training.private_gradient(_linear, clip, 0.0, batch)
    key = jax.random.key(0)
    norms = [float(optax.tree.norm(_record_grad(params, x, y, i))) for i in range(6)]
    assert norms[2] > 10 * clip  # unclipped, the outlier alone would move the step a lot
    contributions = []
    for i in range(6):
        only_i = jnp.arange(6) == i
        _, g = grad(params, x, y, only_i, key)
        contributions.append(g)
        # What record i adds to the step: its gradient scaled to norm min(|g_i|, C), / B.
        assert float(optax.tree.norm(g)) * batch == pytest.approx(min(norms[i], clip), rel=1e-5)
        scale = min(1.0, clip / norms[i]) / batch
        expected = jax.tree.map(lambda a, s=scale: a * s, _record_grad(params, x, y, i))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g, expected)
    _, full = grad(params, x, y, jnp.ones(6, bool), key)  # the step is the sum of them
    summed = jax.tree.map(lambda *a: sum(a), *contributions)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), full, summed)


def test_private_gradient_noise_has_std_sigma_c_over_b():
    params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros((3,))}
    x, y = jnp.zeros((4, 2, 2, 1)), jnp.zeros((4,), jnp.int32)
    grad = training.private_gradient(_linear, 0.5, 2.0, 4)
    draws = [
        np.concatenate(
            [
                np.ravel(v)
                for v in jax.tree.leaves(
                    grad(params, x, y, jnp.zeros(4, bool), jax.random.key(s))[1]
                )
            ]
        )
        for s in range(300)
    ]
    assert np.std(draws) == pytest.approx(2.0 * 0.5 / 4, rel=0.05)


def test_dpsgd_trainer_without_noise_and_a_loose_clip_is_sgd():
    """Full batches, clip never reached, no noise: DP-SGD's steps are plain SGD's."""
    params, x, y = _problem()
    x = x.at[2].set(x[2] / 100.0)
    sgd = optax.sgd(0.1)
    plain = training.make_trainer(_linear, sgd, epochs=2, batch_size=3)
    private = training.make_trainer(_linear, sgd, epochs=2, batch_size=3, dp_clip=1e6)
    key = jax.random.key(1)
    a, _ = plain(params, x, y, jnp.int32(6), key)
    b, metrics = private(params, x, y, jnp.int32(6), key)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a, b)
    assert float(metrics["steps"]) == 4
    noisy = training.make_trainer(
        _linear, sgd, epochs=2, batch_size=3, dp_clip=1e6, dp_noise_multiplier=1e-3
    )
    c, _ = noisy(params, x, y, jnp.int32(6), key)
    assert not np.allclose(c["w"], a["w"], atol=1e-3)  # the noise reaches the params
