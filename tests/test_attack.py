"""The IN/OUT decision rule, the membership score and the loss-threshold baseline."""

import jax
import jax.numpy as jnp
import numpy as np

from fedgan_jax.adversary import attack
from fedgan_jax.nn import models


def test_decision_rule_by_hand():
    # Victim declared labels 1 and 3 (of 4).
    victim = jnp.array([False, True, False, True])
    logits = jnp.array(
        [
            [0.0, 5.0, 0.0, 0.0],  # predicts 1 -> IN
            [0.0, 0.0, 0.0, 5.0],  # predicts 3 -> IN
            [5.0, 0.0, 0.0, 0.0],  # predicts 0 -> OUT
            [0.0, 2.0, 2.5, 2.0],  # predicts 2 -> OUT, although 1+3 hold most mass
        ]
    )
    np.testing.assert_array_equal(attack.decide(logits, victim), [True, True, False, False])
    mass = attack.victim_mass(logits, victim)
    probs = jax.nn.softmax(logits)
    np.testing.assert_allclose(mass, probs[:, 1] + probs[:, 3], rtol=1e-6)
    assert float(mass[3]) > 0.5  # the score and the decision can disagree: both reported


def test_loss_threshold_by_hand():
    # Two classes; logits chosen so that per-record losses are log(1 + e^-d).
    def logits_for(margins, labels):
        out = np.zeros((len(margins), 2), np.float32)
        out[np.arange(len(margins)), labels] = margins
        return jnp.asarray(out)

    own_labels = jnp.array([0, 1, 0, 1])
    own = logits_for([2.0, 2.0, 100.0, -50.0], own_labels)  # last one is padding
    threshold = np.log1p(np.exp(-2.0)) * 2 / 3 + np.log1p(np.exp(-100.0)) / 3
    target_labels = jnp.array([0, 1, 1])
    target = logits_for([5.0, 0.5, 1.9], target_labels)
    scores, decisions = attack.loss_threshold(target, target_labels, own, own_labels, jnp.int32(3))
    losses = np.log1p(np.exp(-np.array([5.0, 0.5, 1.9])))
    np.testing.assert_allclose(scores, -losses, rtol=1e-5)
    np.testing.assert_array_equal(decisions, losses <= threshold)
    assert decisions.tolist() == [True, False, False]


def test_classifier_trainer_learns_a_separable_task():
    clf = models.classifier("mnist")
    train = jax.jit(
        attack.make_classifier_trainer(
            clf, (28, 28, 1), epochs=3, batch_size=16, learning_rate=1e-3
        )
    )
    # Class c: a bright square at position c; 8 records per class, 4 classes used.
    x = -np.ones((64, 28, 28, 1), np.float32)
    y = np.arange(64) % 4
    for i, c in enumerate(y):
        x[i, 5 * c : 5 * c + 5, 5 * c : 5 * c + 5] = 1.0
    x += 0.1 * np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
    params, metrics = train(jax.random.key(0), jnp.asarray(x), jnp.asarray(y), jnp.int32(48))
    pred = np.argmax(clf.apply({"params": params}, jnp.asarray(x[48:])), -1)
    assert (pred == y[48:]).mean() == 1.0  # held-out records of the same classes
    assert bool(metrics["finite"]) and int(metrics["steps"]) == 3 * 3
