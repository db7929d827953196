"""Hidden declarations: recovering the label sets from the global models (label_recovery.py).

Synthetic signals with a hand-known answer, then a small real federation with clear signal
(small local steps, the first-order regime LLG reads), where the recovery must be exact,
and the same federation's signal replaced by noise, where it must be no better than chance
(no exact set: the other participants hold two classes each, noise links none).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedgan_jax.adversary import label_recovery
from fedgan_jax.driver.experiment import train_and_evaluate
from fedgan_jax.nn import models
from tests.conftest import tiny_config

OWNER = np.array([2, 4, 0, 3, 1, 4, 1, 2, 3, 0])  # class c held by participant OWNER[c]
DECLARED = np.stack([OWNER == p for p in range(5)])


def _signal(rounds, rng, *, cohort=3, noise=0.05):
    """Each round a cohort of participants trains: +1 on its classes, -1/4 on the rest
    (a zero-sum bias update), plus noise; the adversary (0) has removed its own share."""
    signal = np.zeros((rounds, 10))
    for t in range(rounds):
        for p in rng.permutation(5)[:cohort]:
            if p != 0:
                signal[t] += np.where(OWNER == p, 1.0, -0.25)
    return signal + noise * rng.normal(size=signal.shape)


def test_recovers_the_partition_exactly_from_a_clear_signal():
    groups = label_recovery.recover(_signal(20, np.random.default_rng(0)))
    assert groups == [[0, 7], [1, 5], [3, 8], [4, 6]]  # the adversary's 2, 9 never appear
    got = label_recovery.score(groups, DECLARED, adversary=0, victim=1)
    assert got["accuracy"] == 1.0 and got["victim_exact"]
    assert got["victim_labels"] == [4, 6] and got["victim_jaccard"] == 1.0


def test_noise_recovers_nothing():
    scores = [
        label_recovery.score(
            label_recovery.recover(np.random.default_rng(s).normal(size=(20, 10))),
            DECLARED,
            adversary=0,
            victim=1,
        )
        for s in range(30)
    ]
    assert np.mean([s["accuracy"] for s in scores]) <= 0.05
    assert np.mean([s["victim_exact"] for s in scores]) <= 0.05


def test_full_participation_cannot_split_the_participants():
    groups = label_recovery.recover(_signal(20, np.random.default_rng(1), cohort=5))
    assert groups == [[0, 1, 3, 4, 5, 6, 7, 8]]
    assert label_recovery.score(groups, DECLARED, adversary=0, victim=1)["accuracy"] == 0.0


def test_last_layer_bias_is_the_classifiers_output_bias():
    clf = models.classifier("mnist", "xla")
    params = models.init_params(clf, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    bias = label_recovery.last_layer_bias(params, 10)
    leaves, treedef = jax.tree.flatten(params)
    shifted = jax.tree.unflatten(treedef, [a + 1.0 if a is bias else a for a in leaves])
    x = jax.random.normal(jax.random.key(1), (3, 28, 28, 1))
    np.testing.assert_allclose(  # +1 on the output bias moves every logit by exactly 1
        clf.apply({"params": shifted}, x), clf.apply({"params": params}, x) + 1.0, atol=1e-5
    )


@pytest.fixture(scope="module")
def hidden_run(tmp_path_factory):
    c = tiny_config()
    c.fl.rounds, c.fl.client_fraction, c.fl.learning_rate = 20, 0.6, 0.002
    c.attack.attacks = ("global_model",)
    c.checkpoint.every = 0
    c.adversary.knows_declarations = False
    return train_and_evaluate(c, str(tmp_path_factory.mktemp("hidden")), progress=False)


def test_small_federation_recovers_the_partition_exactly(hidden_run):
    got = hidden_run["label_recovery"]
    truth = hidden_run["partition"]["classes"]
    assert got["accuracy"] == 1.0 and got["victim_exact"]
    assert got["victim_labels"] == truth["1"]
    assert sorted(got["recovered_sets"]) == sorted(truth[p] for p in "1234")
    # The attacks ran with the recovered set: the global model's IN rule is the victim's.
    assert hidden_run["attacks"]["global_model"]["paper"]["tp"] > 0


def test_hidden_declarations_need_an_honest_upload():
    from fedgan_jax.core.errors import ConfigError
    from fedgan_jax.driver import config_lib

    c = tiny_config()
    c.adversary.knows_declarations = False
    c.adversary.upload = "fake_class"
    with pytest.raises(ConfigError, match=r"^adversary.upload='fake_class': with hidden"):
        config_lib.validate(c)
