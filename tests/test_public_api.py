"""A model and a dataset the package does not ship (scikit-learn's digits, a flax MLP),
through the public API alone: `import fedgan_jax as fj`, plain arrays, no config.

Expectations are derived by hand (FedAvg of one full-batch SGD step per client, the
adversary's share of a malicious upload) or are properties that fail when the code is
wrong (every record dealt once, a per-class z-score has mean 0 in every class).
"""

import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sklearn.datasets

import fedgan_jax as fj


class MLP(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_classes)(nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1))))


@pytest.fixture(scope="module")
def digits():
    x, y = sklearn.datasets.load_digits(return_X_y=True)
    return np.float32((x / 8 - 1).reshape(-1, 8, 8, 1)), y


@pytest.fixture(scope="module")
def mlp():
    model = MLP()
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    return model, (lambda p, x: model.apply({"params": p}, x)), params


def test_clients_from_arrays_deals_every_record_once(digits):
    x, y = digits
    part = fj.clients_from_arrays(x, y, num_clients=4, adversary=0, victim=2, victim_num_labels=3)
    counts = np.asarray(part.clients.counts)
    assert counts.sum() == len(y) and np.array_equal(np.bincount(part.owner), counts)
    assert part.declared[2].sum() == 3 and not (part.declared.sum(0) > 1).any()  # disjoint
    for i in range(4):  # client i holds exactly its records, in order, padding after
        np.testing.assert_array_equal(part.clients.y[i, : counts[i]], y[part.owner == i])
        assert not part.clients.x[i, counts[i] :].any()
    dirichlet = fj.clients_from_arrays(x, y, num_clients=4, scheme="dirichlet", alpha=0.3)
    assert dirichlet.declared.sum() > 10  # classes shared between participants
    with pytest.raises(fj.ConfigError, match="as many records as labels"):
        fj.clients_from_arrays(x, y[:-1])


def _two_clients(x, y):
    """Two clients of 6 records each, capacity 6: one full-batch SGD step per client."""
    xs, ys = x[:12].reshape(2, 6, 8, 8, 1), y[:12].reshape(2, 6).astype(np.int32)
    return fj.ClientData(x=jnp.asarray(xs), y=jnp.asarray(ys), counts=jnp.array([6, 6]))


def test_a_round_is_the_mean_of_the_clients_sgd_steps(digits, mlp):
    model, apply_fn, params = mlp
    clients = _two_clients(*digits)
    fed = fj.federated_averaging(apply_fn, num_clients=2, batch_size=6, learning_rate=0.5)
    state = fed.init(params)
    new, metrics = jax.jit(fed.round)(state, clients, jax.random.key(0))

    def loss(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, x), y).mean()

    steps = [  # by hand: W_k = M - lr * grad L_k(M), then M + mean_k (W_k - M)
        jax.tree.map(lambda g: -0.5 * g, jax.grad(loss)(params, clients.x[k], clients.y[k]))
        for k in range(2)
    ]
    expected = jax.tree.map(lambda p, a, b: p + (a + b) / 2, params, *steps)
    chex.assert_trees_all_close(new.params, expected, atol=1e-6)
    assert int(new.round) == 1 and metrics["loss"].shape == (2,)
    later, _ = jax.jit(fed.round)(new, clients, jax.random.key(1))
    assert int(later.round) == 2


def test_the_adversarys_upload_moves_the_mean_by_its_share(digits, mlp):
    _, apply_fn, params = mlp
    x, y = digits
    clients = _two_clients(x, y)
    ascent = fj.gradient_ascent(apply_fn, batch_size=6)
    fed = fj.federated_averaging(
        apply_fn, num_clients=2, batch_size=6, learning_rate=0.5, adversary=0, upload=ascent
    )
    state, key = fed.init(params), jax.random.key(3)
    honest, _ = fed.round(state, clients, key)
    inputs = fj.ascent_inputs(jax.random.key(4), x[100:140], y[100:140], step=2.0)
    malicious, _ = fed.round(state, clients, key, adversary_inputs=inputs)
    # Equal example counts: the server divides the adversary's extra step of norm 2 by 2.
    shift = jax.tree.map(jnp.subtract, malicious.params, honest.params)
    np.testing.assert_allclose(float(optax.tree.norm(shift)), 1.0, rtol=1e-4)

    def target_loss(p):
        logits = apply_fn(p, x[100:140])
        return float(optax.softmax_cross_entropy_with_integer_labels(logits, y[100:140]).mean())

    assert target_loss(malicious.params) > target_loss(honest.params)
    plain = fj.federated_averaging(apply_fn, num_clients=2, batch_size=6)
    with pytest.raises(fj.ConfigError, match="no upload"):
        plain.round(state, clients, key, adversary_inputs=inputs)
    with pytest.raises(fj.ConfigError, match="adversary's index"):
        fj.federated_averaging(apply_fn, num_clients=2, upload=ascent)


def test_scores_of_any_model(digits, mlp):
    _, apply_fn, params = mlp
    x, y = digits[0][:300], digits[1][:300]
    logits = apply_fn(params, x)
    by_hand = -optax.softmax_cross_entropy_with_integer_labels(logits, y)
    np.testing.assert_allclose(fj.loss_threshold(apply_fn, params, x, y), by_hand, rtol=1e-5)
    z = np.asarray(fj.loss_calibrated(apply_fn, params, x, y, batch_size=64))
    for c in range(10):  # standardised over the candidates of each class
        np.testing.assert_allclose(z[y == c].mean(), 0.0, atol=1e-4)
        np.testing.assert_allclose(z[y == c].std(), 1.0, rtol=1e-3)
    snapshots = jax.tree.map(lambda p: jnp.stack([p, p]), params)
    np.testing.assert_allclose(fj.trajectory(apply_fn, snapshots, x, y), z, atol=1e-5)
    drop = fj.ascent_response(apply_fn, params, params, x, y)
    assert np.isfinite(np.asarray(drop)).all()
    is_member = np.arange(300) < 150
    metrics = fj.membership_metrics(is_member, z, z > 0)
    assert metrics["num_members"] == 150 and 0.0 <= metrics["auc"] <= 1.0


def test_the_gan_attack_runs_on_a_foreign_model(digits, mlp):
    model, apply_fn, params = mlp
    x, y = digits
    part = fj.clients_from_arrays(x, y, num_clients=5, adversary=0, victim=1)
    view = fj.view_of(part.clients, part.declared, adversary=0, victim=1)
    assert int(view.own_count) == int(part.clients.counts[0])
    np.testing.assert_array_equal(view.victim_labels, part.declared[1])
    gan = fj.make_gan_trainer(
        image_shape=(8, 8, 1), num_classes=10, classifier=model, channels=16, steps_per_round=5
    )
    state = gan.init(jax.random.key(1), view)
    state, metrics = jax.jit(gan.update)(state, params, view, jax.random.key(2))
    assert int(state.steps) == 5 and np.isfinite(float(metrics["loss"]))
    dgen = gan.sample(state, params, view, jax.random.key(3))
    assert dgen.x.shape[1:] == (8, 8, 1) and 0 <= int(dgen.count) <= dgen.x.shape[0]
    # D_gen is labelled by the frozen model: its labels are the model's argmax.
    kept = int(dgen.count)
    np.testing.assert_array_equal(dgen.y[:kept], np.argmax(apply_fn(params, dgen.x[:kept]), -1))
    with pytest.raises(fj.ConfigError, match="must differ"):
        fj.view_of(part.clients, part.declared, adversary=1, victim=1)


def test_the_public_api_needs_no_config_library():
    """Importing and running the public API loads neither ml_collections nor the driver."""
    code = (
        "import sys, jax, numpy as np, fedgan_jax as fj\n"
        "x = np.random.default_rng(0).normal(size=(60, 4, 4, 1)).astype('float32')\n"
        "part = fj.clients_from_arrays(x, np.arange(60) % 6, num_clients=3)\n"
        "f = lambda p, x: x.reshape(x.shape[0], -1) @ p\n"
        "fed = fj.federated_averaging(f, num_clients=3, batch_size=8)\n"
        "s = fed.init(np.zeros((16, 6), 'float32'))\n"
        "s, _ = fed.round(s, part.clients, jax.random.key(0))\n"
        "assert int(s.round) == 1\n"
        "bad = [m for m in sys.modules if m.startswith(('ml_collections', 'fedgan_jax.driver'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
