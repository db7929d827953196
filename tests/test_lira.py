"""LiRA by a participant with shadow federations (fedgan_jax/adversary/lira.py).

Hand-derived values for the statistics (Gaussians whose log-likelihood ratio and one-sided
p-value are known in closed form), the shadows' data by hand, and a memorising federation
whose answer is known: three participants of 20 random 32-dimensional records each, a
linear model and 20 local epochs, so the victim's records are fit and held-out records of
its classes (random, like them) are not. LiRA must separate them, and must fail when its
key step (which shadows trained on which candidate) is scrambled.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import fedgan_jax as fj
from fedgan_jax.adversary import lira, membership

NUM_CLASSES, PER_CLIENT, ROUNDS, SHADOWS = 8, 20, 3, 16


def _linear(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def _init(key):
    return {"w": 0.01 * jax.random.normal(key, (32, NUM_CLASSES)), "b": jnp.zeros(NUM_CLASSES)}


def _records(rng, n, labels):
    return rng.normal(size=(n, 4, 8, 1)).astype(np.float32), rng.choice(labels, n).astype(np.int32)


def _federation():
    return fj.federated_averaging(
        _linear, num_clients=3, local_epochs=20, batch_size=10, learning_rate=0.3
    )


@pytest.fixture(scope="module")
def world():
    """Adversary 0 (classes 4, 5), victim 1 (classes 0-3), participant 2 (classes 6, 7);
    candidates: the victim's 20 records, then 20 held-out records of its classes."""
    rng = np.random.default_rng(0)
    own = _records(rng, PER_CLIENT, [4, 5])
    members = _records(rng, PER_CLIENT, [0, 1, 2, 3])
    other = _records(rng, PER_CLIENT, [6, 7])
    held_out = _records(rng, PER_CLIENT, [0, 1, 2, 3])
    clients = fj.ClientData(
        x=np.stack([own[0], members[0], other[0]]),
        y=np.stack([own[1], members[1], other[1]]),
        counts=np.full(3, PER_CLIENT, np.int32),
    )
    declared = np.zeros((3, NUM_CLASSES), bool)
    declared[0, [4, 5]], declared[1, :4], declared[2, [6, 7]] = True, True, True
    view = fj.view_of(clients, declared, adversary=0, victim=1)
    x = np.concatenate([members[0], held_out[0]])
    y = np.concatenate([members[1], held_out[1]])
    return dict(clients=clients, view=view, x=x, y=y, is_member=np.arange(40) < PER_CLIENT)


@pytest.fixture(scope="module")
def trained(world):
    """The real federation (its global params after rounds 1, 2 and 3) and 16 shadows."""
    fed = _federation()
    state, step, kept = fed.init(_init(jax.random.key(100))), jax.jit(fed.round), []
    for t in range(ROUNDS):
        state, _ = step(state, world["clients"], jax.random.key(200 + t))
        kept.append(state.params)
    masks = np.asarray(fj.shadow_masks(jax.random.key(1), 40, SHADOWS))
    clients = fj.shadow_clients(world["view"], masks, world["x"], world["y"])
    shadows = fj.train_shadows(
        fed, _init, clients, jax.random.key(2), rounds=ROUNDS, keep_rounds=(1, 2)
    )
    return dict(target=state.params, kept=kept, masks=masks, shadows=shadows)


def _auc(is_member, scores):
    scores = np.asarray(scores)
    return fj.membership_metrics(is_member, scores, scores > np.median(scores))["auc"]


def test_masks_put_every_candidate_in_half_of_the_shadows():
    masks = np.asarray(fj.shadow_masks(jax.random.key(0), 1000, 16))
    assert masks.shape == (16, 1000) and masks.dtype == bool
    np.testing.assert_array_equal(masks.sum(0), 8)  # every candidate IN in exactly S/2
    assert np.abs(masks.sum(1) - 500).max() < 80  # each shadow holds about half
    assert len({tuple(c) for c in masks.T}) > 500  # the IN shadows differ per candidate
    odd = np.asarray(fj.shadow_masks(jax.random.key(1), 50, 5))
    np.testing.assert_array_equal(odd.sum(0), 2)
    other = np.asarray(fj.shadow_masks(jax.random.key(1), 1000, 16))
    assert (other != masks).any()
    with pytest.raises(fj.ConfigError, match="at least 2 shadows"):
        fj.shadow_masks(jax.random.key(0), 10, 1)


def test_shadow_clients_fill_the_slots_by_hand():
    """Victim 1 declares {0, 1}, adversary 0 {4}, participant 2 {6}, participant 3 {7}."""
    declared = np.zeros((4, 8), bool)
    declared[1, [0, 1]], declared[0, 4], declared[2, 6], declared[3, 7] = True, True, True, True
    own_x = np.full((4, 2, 2, 1), 9.0, np.float32)
    own = fj.ClientData(
        x=np.stack([own_x] + [np.zeros_like(own_x)] * 3),
        y=np.full((4, 4), 4, np.int32),
        counts=np.array([3, 0, 0, 0], np.int32),
    )
    view = fj.view_of(own, declared, adversary=0, victim=1)
    x = np.arange(6, dtype=np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)
    y = np.array([0, 0, 1, 1, 6, 6], np.int32)
    masks = np.array([[1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1]], bool)
    data = fj.shadow_clients(view, masks, x, y, multiple_of=4)
    assert data.x.shape == (2, 4, 4, 2, 2, 1) and data.y.shape == (2, 4, 4)
    np.testing.assert_array_equal(data.counts, [[3, 3, 1, 3], [3, 3, 1, 3]])
    np.testing.assert_array_equal(data.x[0, 1, :3, 0, 0, 0], [0, 2, 4])  # IN in shadow 0
    np.testing.assert_array_equal(data.x[1, 1, :3, 0, 0, 0], [1, 3, 5])
    np.testing.assert_array_equal(data.x[0, 2, :1, 0, 0, 0], [5])  # OUT, label 6: slot 2
    np.testing.assert_array_equal(data.x[1, 2, :1, 0, 0, 0], [4])
    for s in range(2):  # the adversary's own records; slot 3 (label 7, no candidate) too
        for slot in (0, 3):
            np.testing.assert_array_equal(data.x[s, slot, :3], own_x[:3])
            np.testing.assert_array_equal(data.y[s, slot, :3], 4)
    assert not data.x[:, :, 3].any()  # padding to the multiple of 4
    with pytest.raises(fj.ConfigError, match="capacity 2 < largest"):
        fj.shadow_clients(view, masks, x, y, capacity=2)


def test_online_and_offline_scores_of_hand_built_gaussians():
    # IN {3, 5} (median 4, std 1), OUT {0, 2} (median 1, std 1), target 4: online
    # log N(4; 4, 1) - log N(4; 1, 1) = 9/2; offline -log P(Z >= 4), Z ~ N(1, 1).
    shadows, masks = jnp.array([[3.0], [5.0], [0.0], [2.0]]), jnp.array([[1], [1], [0], [0]])
    online = lira.likelihood_ratio(jnp.array([4.0]), shadows, masks)
    np.testing.assert_allclose(online, [4.5], rtol=1e-5)
    offline = lira.likelihood_ratio(jnp.array([4.0]), shadows, masks, online=False)
    np.testing.assert_allclose(offline, [-np.log(scipy.stats.norm.sf(3.0))], rtol=1e-5)
    assert float(offline[0]) == pytest.approx(6.6077, abs=1e-3)


def test_scores_take_the_median_and_the_per_candidate_or_pooled_spread():
    # Candidate 0: IN {0, 1, 5} (median 1, mean 2), OUT {6, 8}; candidate 1: IN {2, 9},
    # OUT {1, 3, 4}.
    s = np.array([[0.0, 2.0], [1.0, 1.0], [5.0, 9.0], [6.0, 3.0], [8.0, 4.0]])
    m = np.array([[1, 1], [1, 0], [1, 1], [0, 0], [0, 0]], bool)
    t = np.array([2.0, 5.0])
    norm = scipy.stats.norm
    ins, outs = [s[m[:, j], j] for j in range(2)], [s[~m[:, j], j] for j in range(2)]
    want = [
        norm.logpdf(t[j], np.median(ins[j]), ins[j].std())
        - norm.logpdf(t[j], np.median(outs[j]), outs[j].std())
        for j in range(2)
    ]
    got = lira.likelihood_ratio(jnp.asarray(t), jnp.asarray(s), jnp.asarray(m))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    off = [-norm.logsf(t[j], np.median(outs[j]), outs[j].std()) for j in range(2)]
    got = lira.likelihood_ratio(jnp.asarray(t), jnp.asarray(s), jnp.asarray(m), online=False)
    np.testing.assert_allclose(got, off, rtol=1e-5, atol=1e-6)  # float32 near 0
    # Global variance: one std per side, the deviations from each candidate's own mean
    # pooled over candidates.
    sd_in = np.sqrt(np.mean(np.concatenate([v - v.mean() for v in ins]) ** 2))
    sd_out = np.sqrt(np.mean(np.concatenate([v - v.mean() for v in outs]) ** 2))
    want = [
        norm.logpdf(t[j], np.median(ins[j]), sd_in) - norm.logpdf(t[j], np.median(outs[j]), sd_out)
        for j in range(2)
    ]
    got = lira.likelihood_ratio(
        jnp.asarray(t), jnp.asarray(s), jnp.asarray(m), global_variance=True
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_shadows_fit_their_in_candidates(trained, world):
    """The shadows' IN models fit a candidate far better than its OUT models."""
    conf = jax.vmap(lambda p: membership.logit_confidence(_linear(p, world["x"]), world["y"]))(
        trained["shadows"].params
    )
    conf, masks = np.asarray(conf), trained["masks"]
    gap = [np.median(conf[masks[:, j], j]) - np.median(conf[~masks[:, j], j]) for j in range(40)]
    assert np.mean(np.array(gap) > 0) > 0.9


def test_lira_separates_members_and_fails_with_scrambled_masks(trained, world):
    args = (_linear, trained["target"], trained["shadows"].params)
    x, y, is_member, masks = world["x"], world["y"], world["is_member"], trained["masks"]
    for kwargs in ({}, {"online": False}, {"global_variance": True}):
        auc = _auc(is_member, fj.lira_scores(*args, masks, x, y, **kwargs))
        assert auc > 0.9, (kwargs, auc)
    # The key step removed: which shadows trained on a candidate, shuffled per candidate
    # (every candidate still IN in 8 of the 16). The Gaussians then describe nothing.
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(5):
        scrambled = np.stack([rng.permutation(c) for c in masks.T], axis=1)
        aucs.append(_auc(is_member, fj.lira_scores(*args, scrambled, x, y)))
    assert 0.3 < np.mean(aucs) < 0.7, aucs


def test_snapshot_scores_sum_the_rounds(trained, world):
    x, y, masks = world["x"], world["y"], trained["masks"]
    snaps = trained["shadows"].snapshots
    chex.assert_tree_shape_prefix(snaps, (SHADOWS, 2))
    target = jax.tree.map(lambda *p: jnp.stack(p), *trained["kept"][:2])
    got = fj.lira_snapshot_scores(_linear, target, snaps, masks, x, y)
    by_round = [
        fj.lira_scores(
            _linear, trained["kept"][k], jax.tree.map(lambda p, k=k: p[:, k], snaps), masks, x, y
        )
        for k in range(2)
    ]
    assert got.shape == (40,)
    np.testing.assert_allclose(got, by_round[0] + by_round[1], rtol=1e-5, atol=1e-5)
    assert _auc(world["is_member"], got) > 0.9


def test_vmapped_and_mapped_shadows_equal_a_loop_of_federations(world):
    fed, key = _federation(), jax.random.key(5)
    masks = np.asarray(fj.shadow_masks(jax.random.key(6), 40, 2))
    clients = fj.shadow_clients(world["view"], masks, world["x"], world["y"])
    got = {
        axis: fj.train_shadows(fed, _init, clients, key, rounds=2, keep_rounds=(1,), run_axis=axis)
        for axis in lira.RUN_AXES
    }
    step = jax.jit(fed.round)
    for s in range(2):  # the documented keys: fold_in(key, s), split, fold_in(run_key, t)
        init_key, run_key = jax.random.split(jax.random.fold_in(key, s))
        state = fed.init(_init(init_key))
        one = jax.tree.map(lambda a, s=s: jnp.asarray(a)[s], clients)
        state, _ = step(state, one, jax.random.fold_in(run_key, 1))
        after_one = state.params
        state, _ = step(state, one, jax.random.fold_in(run_key, 2))
        for shadows in got.values():
            pick = jax.tree.map(lambda p, s=s: p[s], shadows)
            chex.assert_trees_all_close(pick.params, state.params, atol=1e-5, rtol=1e-5)
            chex.assert_trees_all_close(
                jax.tree.map(lambda p: p[0], pick.snapshots), after_one, atol=1e-5, rtol=1e-5
            )
    assert not np.allclose(got["map"].params["w"][0], got["map"].params["w"][1])
    with pytest.raises(fj.ConfigError, match="run_axis"):
        fj.train_shadows(fed, _init, clients, key, rounds=2, run_axis="pmap")
    with pytest.raises(fj.ConfigError, match="keep_rounds"):
        fj.train_shadows(fed, _init, clients, key, rounds=2, keep_rounds=(3,))
