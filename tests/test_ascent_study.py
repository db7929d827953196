"""studies/ascent_side_by_side.py on a tiny federation (40 images per class, one round)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedgan_jax.data import datasets as data
from studies import ascent_side_by_side as study


@pytest.fixture(scope="module")
def tiny():
    ds = data.load_dataset("mnist", "bundled", max_train_per_class=40)
    return ds, study.Study(study.build_federation(0, 1, ds))


def test_the_prototype_row_is_the_prototype(tiny):
    """The variant with every element at the prototype's is its construction, number for
    number, on the same inputs (its scores and its membership truth)."""
    ds, s = tiny
    want, want_truth = study.prototype_scores(ds, seed=0, rounds=1)
    got, truth = s.scores(study.PROTOTYPE)
    np.testing.assert_array_equal(truth, want_truth)
    np.testing.assert_array_equal(got, want)


def test_the_prototype_non_members_are_classes_0_and_1(tiny):
    """Its label expression compares a boolean row with 0..9: [0, 1] for any deal, so its
    'same-class' non-members are not of the victim's classes (seed 0 deals it 4 and 6)."""
    ds, s = tiny
    victim = set(np.flatnonzero(s.fed.victim_mask).tolist())
    assert study.prototype_label_expression(s.fed.declared) == [0, 1]
    assert victim == {4, 6}
    held_out = s.pool_y[s.non_index["victim"]]
    assert set(held_out.tolist()) == victim
    assert set(s.pool_y[s.non_index["prototype"]].tolist()) == {0, 1}
    assert set(s.pool_y[s.target_index["victim"]].tolist()) == victim


@pytest.mark.parametrize("round_a", ["prototype", "engine"])
def test_the_step_moves_the_global_model_by_gamma_update_norms(tiny, round_a):
    """In both round-a paths the step (the difference from the same round without it) is
    gamma times the chosen global-update norm, and a step of 0 adds nothing."""
    _, s = tiny
    v = dataclasses.replace(study.ENGINE, round_a=round_a, gamma=2.0)
    zero = s.model_a(dataclasses.replace(v, gamma=0.0))
    diff = jax.tree.map(jnp.subtract, s.model_a(v), zero)
    assert study._norm(diff) == pytest.approx(2.0 * s.step_norm(v), rel=2e-3)
    if round_a == "prototype":  # the honest round on key T+1 plus the step
        honest = s.honest_a(v)
        for a, b in zip(jax.tree.leaves(zero), jax.tree.leaves(honest), strict=True):
            np.testing.assert_array_equal(a, b)
