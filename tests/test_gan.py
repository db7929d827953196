"""The generator trainer: Eq. 5 falls against a frozen model, every mode's terms, D_gen."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedgan_jax import gan, models
from fedgan_jax.adversary import AdversaryView


@pytest.fixture(scope="module")
def frozen():
    """A small frozen 'global model' (Table II MNIST, random init) and an adversary view."""
    clf = models.classifier("mnist")
    params = models.init_params(clf, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    declared = np.zeros((5, 10), bool)
    for c in range(10):
        declared[c % 5, c] = True
    own_x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1), minval=-1, maxval=1)
    view = AdversaryView(
        own_x=own_x,
        own_y=jnp.zeros(16, jnp.int32),
        own_count=jnp.int32(12),
        declared=jnp.asarray(declared),
        victim=jnp.int32(1),
        adversary=jnp.int32(0),
    )
    return clf, params, view


def _trainer(clf, mode, **kw):
    defaults = dict(
        dataset="mnist",
        classifier=clf,
        mode=mode,
        channels=16,
        batch_per_class=2,
        steps_per_round=15,
        learning_rate=5e-3,
        samples_per_class=6,
    )
    return gan.make_gan_trainer(**(defaults | kw))


@pytest.mark.parametrize("mode", gan.MODES)
def test_generator_loss_falls_and_global_params_stay_frozen(frozen, mode):
    clf, params, view = frozen
    before = jax.tree.map(np.array, params)  # host copy, bit for bit
    trainer = _trainer(clf, mode)
    state = trainer.init(jax.random.key(2), view)
    update = jax.jit(trainer.update)
    state, first = update(state, params, view, jax.random.key(3))
    for t in range(3):
        state, last = update(state, params, view, jax.random.key(4 + t))
    # Eq. 5's cross-entropy (present in every mode) falls as G learns to fool f.
    assert float(last["ce"]) < float(first["ce"])
    assert int(state.steps) == 4 * 15
    chex.assert_trees_all_equal(jax.tree.map(np.array, params), before)
    if mode in ("adversarial", "prior"):
        assert state.critic is not None and "critic_loss" in last
    else:
        assert state.critic is None


def test_gradient_reaches_generator_only(frozen):
    """The generator's update does not depend on a gradient w.r.t. the frozen model."""
    clf, params, view = frozen
    trainer = _trainer(clf, "paper", steps_per_round=1)
    state = trainer.init(jax.random.key(2), view)

    def total(global_params):
        new, metrics = trainer.update(state, global_params, view, jax.random.key(3))
        return metrics["loss"]

    grads = jax.grad(total)(params)  # stop_gradient on the discriminator: all zeros
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_entropy_term_is_largest_for_uniform_histogram():
    w = jnp.ones(4)
    uniform = jnp.full((4, 4), 0.25)
    one_class = jnp.tile(jnp.array([1.0, 0.0, 0.0, 0.0]), (4, 1))
    two_classes = jnp.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]] * 2)
    values = [float(gan._entropy_of_mean(p, w)) for p in (uniform, two_classes, one_class)]
    np.testing.assert_allclose(values, [np.log(4), np.log(2), 0.0], atol=1e-6)


def test_mode_seeking_term():
    z = jnp.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 4.0]])
    same = jnp.zeros((4, 2, 2, 1))
    assert float(gan._mode_seeking(same, z)) == 0.0
    images = jnp.stack(
        [jnp.zeros((2, 2, 1)), jnp.zeros((2, 2, 1)), jnp.ones((2, 2, 1)), 3 * jnp.ones((2, 2, 1))]
    )
    # pairs (0, 2) and (1, 3): mean |dx| 1 and 3, mean |dz| (2+2)/2 = 2 and (2+3)/2 = 2.5
    # -> mean(1/2, 3/2.5) = 0.85
    np.testing.assert_allclose(float(gan._mode_seeking(images, z)), 0.85, rtol=1e-3)


def test_mode_seeking_pairs_samples_of_the_same_class():
    # 3 per class, 2 classes, labels 0,1,0,1,0,1: rows of the [3, 2] view share a class.
    z = jnp.arange(12.0).reshape(6, 2)
    by_class = jnp.array([0.0, 5.0, 0.0, 5.0, 0.0, 5.0])[:, None, None, None] * jnp.ones(
        (6, 2, 2, 1)
    )
    # Every same-class pair is identical, so there is no diversity to reward; pairing
    # across classes (sample i with i + 3) would see |0 - 5| everywhere.
    assert float(gan._mode_seeking(by_class, z, num_classes=2)) == 0.0
    assert float(gan._mode_seeking(by_class, z, num_classes=1)) > 0.0


def test_loss_weights_modes_and_overrides():
    assert gan.loss_weights("paper")["ce"] == 1.0
    assert all(v == 0 for k, v in gan.loss_weights("paper").items() if k != "ce")
    assert gan.loss_weights("dafl")["entropy"] > 0
    assert gan.loss_weights("dafl", {"entropy": -1.0})["entropy"] > 0  # -1: keep default
    assert gan.loss_weights("dafl", {"entropy": 0.0})["entropy"] == 0.0
    with pytest.raises(ValueError, match="gan.mode"):
        gan.loss_weights("wgan")
    with pytest.raises(ValueError, match="use one of them"):  # student and discriminator
        gan.loss_weights("adversarial", {"realism": 0.3})


@pytest.mark.parametrize("keep_confidence", [0.0, 0.11])
def test_sample_keeps_what_f_assigns_to_the_target(frozen, keep_confidence):
    clf, params, view = frozen
    trainer = _trainer(clf, "paper", keep_confidence=keep_confidence)
    state = trainer.init(jax.random.key(2), view)
    state, _ = jax.jit(trainer.update)(state, params, view, jax.random.key(3))
    dgen = jax.jit(trainer.sample)(state, params, view, jax.random.key(5))
    n = int(dgen.count)
    assert dgen.x.shape == (60, 28, 28, 1) and dgen.y.shape == (60,)
    probs = jax.nn.softmax(clf.apply({"params": params}, dgen.x))
    # Labels are the global model's own: y = f(x_gen) (Algorithm 1 line 8).
    np.testing.assert_array_equal(dgen.y, np.argmax(probs, -1))
    np.testing.assert_allclose(dgen.soft, probs, atol=1e-5)
    keep = (np.asarray(dgen.y) == np.asarray(dgen.target)) & (
        np.asarray(probs).max(-1) >= keep_confidence
    )
    assert keep[:n].all() and not keep[n:].any()
    assert np.bincount(np.asarray(dgen.target), minlength=10).tolist() == [6] * 10


def test_undeclared_classes_are_never_kept(frozen):
    clf, params, view = frozen
    declared = np.asarray(view.declared).copy()
    declared[:, 3] = False  # nobody declared class 3
    view3 = view.replace(declared=jnp.asarray(declared))
    trainer = _trainer(clf, "paper", filter_target=False)
    state = trainer.init(jax.random.key(2), view3)
    dgen = trainer.sample(state, params, view3, jax.random.key(5))
    n = int(dgen.count)
    assert n == 54 and not (np.asarray(dgen.target[:n]) == 3).any()


def test_images_grid_is_per_class(frozen):
    clf, _, view = frozen
    trainer = _trainer(clf, "paper")
    state = trainer.init(jax.random.key(2), view)
    grid = trainer.images(state.generator, jax.random.key(0), 3)
    chex.assert_shape(grid, (10, 3, 28, 28, 1))
    # Row c holds the generator's output for label c: regenerate one and compare.
    z = jax.random.normal(jax.random.key(0), (2, 20, 100))[0]
    labels = gan.balanced_labels(10, 2)
    direct = trainer.generate(state.generator, z, labels)
    np.testing.assert_allclose(grid[4, 0], direct[4], atol=1e-5)
