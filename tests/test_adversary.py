"""The adversary module on its own: what `observe` keeps, when the trigger fires, when the
generator steps, and the label rule over runs (no federation needed)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedgan_jax.data.partition import ClientData
from fedgan_jax.driver import adversary as adv
from fedgan_jax.driver import adversary_attacks, adversary_plan, adversary_program, outputs
from fedgan_jax.driver.simulation import gan_trainer
from fedgan_jax.driver.state import derive_keys, plateau_restores
from fedgan_jax.nn import models
from tests.conftest import tiny_config

RUNS = 2


@pytest.fixture(scope="module")
def setting():
    config = tiny_config()
    config.fl.rounds = 4
    config.adversary.snapshot_every = 2
    config.gan.figure_rounds = (3,)
    clf = models.classifier("mnist")

    class _DS:
        image_shape, num_classes = (28, 28, 1), 10

    program = adversary_program.build_program(
        config, clf, (28, 28, 1), RUNS, gan_trainer(config, _DS, clf)
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (RUNS, 5, 8, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, (RUNS, 5, 8)).astype(np.int32)
    clients = ClientData(x=jnp.asarray(x), y=jnp.asarray(y), counts=jnp.full((RUNS, 5), 6))
    declared = np.zeros((RUNS, 5, 10), bool)
    for c in range(10):
        declared[:, c % 5, c] = True
    view = adv.adversary_view(clients, declared, adversary=0, victim=1)
    keys = derive_keys(jnp.stack([jax.random.key(0), jax.random.key(1)]))[1]
    params = [
        jax.vmap(lambda k: models.init_params(clf, k, jnp.zeros((1, 28, 28, 1))))(
            jax.random.split(jax.random.key(t), RUNS)
        )
        for t in range(5)
    ]
    return config, program, view, keys, params


def _observe_all(setting, plan, announced):
    config, program, view, keys, params = setting
    state = adv.init_state(program, plan, params[0], view, keys, grid_shape=(10, 2, 28, 28, 1))
    for t in range(1, 5):
        state = adv.observe(
            program, plan, state, params[t], announced[t - 1], t, view=view, keys=keys
        )
    return state


def test_observe_keeps_the_latest_model_and_every_kth_snapshot(setting):
    config, program, view, keys, params = setting
    plan = dataclasses.replace(
        adversary_plan.Plan.from_config(config), trigger="round", trigger_round=3
    )
    state = _observe_all(setting, plan, np.zeros((4, RUNS)))
    jax.tree.map(np.testing.assert_array_equal, state.latest, params[4])
    np.testing.assert_array_equal(state.snapshots.round, [2, 4])
    for slot, t in enumerate((2, 4)):
        jax.tree.map(
            lambda kept, p, s=slot: np.testing.assert_array_equal(kept[:, s], p),
            state.snapshots.params,
            params[t],
        )
    # generator: off in rounds 1-2, on from round 3 (trigger=round), first grid filled then
    np.testing.assert_array_equal(state.gan_start, [3, 3])
    loss = np.asarray(state.generator_loss)
    assert np.isnan(loss[:, :2]).all() and np.isfinite(loss[:, 2:]).all()
    assert int(state.gan.steps[0]) == 2 * config.gan.steps_per_round
    assert float(jnp.abs(state.grids["first"]).sum()) > 0
    assert float(jnp.abs(state.grids["3"]).sum()) > 0
    own = np.asarray(state.own_accuracy)
    assert np.isfinite(own).all() and ((own >= 0) & (own <= 1)).all()


def test_own_eval_every_measures_on_its_rounds_and_the_last_only(setting):
    """adversary.own_eval_every=3 over 4 rounds: its own accuracy is measured in rounds 3
    and 4 (the last) and nan elsewhere, where the own_accuracy trigger cannot fire."""
    config, program, *_ = setting
    calls = []

    def measured(params, view):
        calls.append(1)
        return jnp.full(RUNS, 0.99)

    plan = dataclasses.replace(
        adversary_plan.Plan.from_config(config),
        trigger="own_accuracy",
        trigger_accuracy=0.5,
        own_eval_every=3,
    )
    state = _observe_all(
        (config, program._replace(own_accuracy=measured), *setting[2:]), plan, np.zeros((4, RUNS))
    )
    own = np.asarray(state.own_accuracy)
    np.testing.assert_array_equal(np.isfinite(own), [[False, False, True, True]] * RUNS)
    assert len(calls) == 2
    np.testing.assert_array_equal(state.gan_start, [3, 3])


def test_accuracy_trigger_fires_per_run_on_the_announcement(setting):
    config, *_ = setting
    plan = dataclasses.replace(
        adversary_plan.Plan.from_config(config), trigger="accuracy", trigger_accuracy=0.5
    )
    # run 0 reaches 0.5 in round 2, run 1 never: only run 0's generator steps
    announced = np.array([[0.1, 0.1], [0.6, 0.2], [0.4, 0.3], [0.9, 0.49]])
    state = _observe_all(setting, plan, announced)
    np.testing.assert_array_equal(state.gan_start, [2, 0])
    loss = np.asarray(state.generator_loss)
    assert np.isfinite(loss[0, 1:]).all() and np.isnan(loss[1]).all()
    assert int(state.gan.steps[0]) == 3 * config.gan.steps_per_round
    assert int(state.gan.steps[1]) == 0  # never started: its generator is untouched


def test_own_mmd_keeps_the_generator_of_its_best_check(setting):
    """gan.select=own_mmd: at each check the generator is kept where its score is the
    lowest so far (per run; nan, a run whose generator is off, never wins), and D_gen's
    generator is that one, not the last."""
    config, program, view, keys, params = setting
    plan = dataclasses.replace(
        adversary_plan.Plan.from_config(config), trigger="round", trigger_round=1, select_every=1
    )
    scores = iter([[3.0, 5.0], [1.0, 6.0], [2.0, 4.0], [np.nan, 7.0]])
    program = program._replace(gan_score=lambda *_: jnp.asarray(next(scores)))
    state = adv.init_state(program, plan, params[0], view, keys, grid_shape=(10, 2, 28, 28, 1))
    generators = []
    for t in range(1, 5):
        state = adv.observe(
            program, plan, state, params[t], np.zeros(RUNS), t, view=view, keys=keys
        )
        generators.append(state.gan.generator)
    np.testing.assert_array_equal(state.gan_kept_round, [2, 3])
    np.testing.assert_allclose(state.gan_kept_score, [1.0, 4.0])
    np.testing.assert_allclose(state.generator_score[1], [5.0, 6.0, 4.0, 7.0])
    for run, t in enumerate((2, 3)):
        jax.tree.map(
            lambda kept, g, r=run: np.testing.assert_array_equal(kept[r], g[r]),
            state.gan_kept,
            generators[t - 1],
        )
    last = jax.tree.leaves(generators[-1])[0]
    assert not np.array_equal(jax.tree.leaves(state.gan_kept)[0][0], last[0])

    class Drawn(Exception):
        pass

    def sample(gan_state, *_):  # D_gen is drawn here: record from which generator
        raise Drawn(gan_state.generator)

    with pytest.raises(Drawn) as drawn:
        adversary_attacks.attack_targets(
            program._replace(sample=sample),
            plan,
            state,
            view=view,
            keys=keys,
            pool_x=jnp.zeros((4, 28, 28, 1)),
            pool_y=jnp.zeros(4, jnp.int32),
        )
    jax.tree.map(np.testing.assert_array_equal, drawn.value.args[0], state.gan_kept)


def test_plateau_restores_every_patience_checks_without_a_better_score():
    nan = np.nan
    score = np.array(
        [
            [3, 1, nan, 2, 2, 2, 2, 0.5, 4, 4],
            [1, 2, 3, 4, 5, 6, 7, nan, nan, nan],
        ]
    )
    want = np.zeros(score.shape, bool)
    want[0, [4, 6, 9]] = True  # 2nd and 4th check after the 1; 2nd after the 0.5
    want[1, [2, 4, 6]] = True
    np.testing.assert_array_equal(plateau_restores(score, 2), want)
    assert not plateau_restores(score, 0).any()
    np.testing.assert_array_equal(plateau_restores(score, 3)[1], np.isin(np.arange(10), [3, 6]))


def test_own_feature_mmd_scores_in_the_features_of_the_model_it_received(setting):
    """gan.select=own_feature_mmd: the check scores the generator in the penultimate
    features of the global model passed to it (the round's), own_mmd in pixels; both with
    the same latents and records."""
    config, program, view, keys, params = setting
    clf = models.classifier("mnist")

    class _DS:
        image_shape, num_classes = (28, 28, 1), 10

    trainer = gan_trainer(config, _DS, clf)
    features = config.copy_and_resolve_references()
    features.gan.select = "own_feature_mmd"
    assert adversary_plan.Plan.from_config(features).select_every == config.gan.select_every
    in_features = adversary_program.build_program(
        features, clf, (28, 28, 1), RUNS, trainer
    ).gan_score
    state = adv.init_state(program, adversary_plan.Plan.from_config(config), params[0], view, keys,
                           grid_shape=(10, 2, 28, 28, 1))  # fmt: skip
    g = state.gan.generator
    pixels = np.asarray(program.gan_score(g, params[1], view, keys.select))
    np.testing.assert_allclose(pixels, program.gan_score(g, params[2], view, keys.select))
    one, two = (np.asarray(in_features(g, params[t], view, keys.select)) for t in (1, 2))
    assert np.all(np.abs(one - two) > 1e-6)  # another model, other features
    run0 = jax.tree.map(lambda a: a[0], (g, params[1], view, keys.select))
    expect = trainer.own_mmd(run0[0], run0[2], run0[3], run0[1])
    np.testing.assert_allclose(one[0], expect, rtol=1e-5)
    assert np.all(np.abs(one - pixels) > 1e-6)


def test_own_mmd_patience_restores_the_kept_generator_at_half_the_step(setting):
    """gan.select_patience=2: the second check in a row without a better score puts the
    kept generator back (per run) and halves that run's generator learning rate; the
    next round trains on from it; results.json's generator_selection lists the round."""
    config, program, view, keys, params = setting
    plan = dataclasses.replace(
        adversary_plan.Plan.from_config(config),
        trigger="round",
        trigger_round=1,
        select_every=1,
        select_patience=2,
    )
    scores = iter([[1.0, 5.0], [2.0, 4.0], [3.0, 6.0], [0.5, 7.0]])
    program = program._replace(gan_score=lambda *_: jnp.asarray(next(scores)))
    state = adv.init_state(program, plan, params[0], view, keys, grid_shape=(10, 2, 28, 28, 1))
    generators, scales = [], []
    for t in range(1, 5):
        state = adv.observe(
            program, plan, state, params[t], np.zeros(RUNS), t, view=view, keys=keys
        )
        generators.append(state.gan.generator)
        scales.append(np.asarray(state.gan.lr_scale).tolist())
    assert scales == [[1, 1], [1, 1], [0.5, 1], [0.5, 0.5]]

    def same(a, b, run):
        pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        return all(np.array_equal(x[run], y[run]) for x, y in pairs)

    assert same(generators[2], generators[0], 0)  # round 3: run 0 back to round 1's
    assert not same(generators[2], generators[1], 0)
    assert not same(generators[3], generators[0], 0)  # and trains on from it
    assert same(generators[3], generators[1], 1)  # round 4: run 1 back to round 2's
    np.testing.assert_array_equal(state.gan_kept_round, [4, 2])
    config.gan.select, config.gan.select_patience = "own_mmd", 2
    rounds = [outputs.generator_selection(config, state, r)["restored_at"] for r in range(RUNS)]
    assert rounds == [[3], [4]]


def test_fired_rules():
    plan = adversary_plan.Plan.from_config(tiny_config())
    acc = dataclasses.replace(plan, trigger="accuracy", trigger_accuracy=0.9)
    own = dataclasses.replace(plan, trigger="own_accuracy", trigger_accuracy=0.9)
    rnd = dataclasses.replace(plan, trigger="round", trigger_round=5)
    announced, mine = np.array([0.95, 0.5]), np.array([0.5, 0.95])
    np.testing.assert_array_equal(adv.fired(acc, announced, mine, 1), [True, False])
    np.testing.assert_array_equal(adv.fired(own, announced, mine, 1), [False, True])
    np.testing.assert_array_equal(adv.fired(rnd, announced, mine, 4), [False, False])
    np.testing.assert_array_equal(adv.fired(rnd, announced, mine, 5), [True, True])


def test_view_and_label_rule_over_runs():
    declared = np.zeros((2, 3, 4), bool)
    declared[0, 1, [1, 3]] = True  # run 0: the victim (1) holds 1 and 3
    declared[1, 1, [0]] = True  # run 1: the victim holds 0
    declared[:, 2, 2] = True
    clients = ClientData(
        x=jnp.zeros((2, 3, 2, 1, 1, 1)),
        y=jnp.zeros((2, 3, 2), jnp.int32),
        counts=jnp.ones((2, 3), jnp.int32),
    )
    view = adv.adversary_view(clients, declared, adversary=0, victim=1)
    np.testing.assert_array_equal(view.victim_labels, declared[:, 1])
    np.testing.assert_array_equal(view.declared_classes[0], [False, True, True, True])
    logits = jnp.array([[[0, 5.0, 0, 0], [5.0, 0, 0, 0]], [[5.0, 0, 0, 0], [0, 0, 5.0, 0]]])
    scores, decisions = adversary_attacks.label_scores(logits, view.victim_labels)
    np.testing.assert_array_equal(decisions, [[True, False], [True, False]])
    probs = jax.nn.softmax(logits)
    np.testing.assert_allclose(scores[0], probs[0][:, 1] + probs[0][:, 3], rtol=1e-6)


@pytest.mark.parametrize("upload", ["gradient_ascent", "fake_class"])
def test_upload_inputs_hold_only_the_adversarys_own_inputs(setting, upload):
    """A malicious upload's inputs: its own round key, the candidates it is asked about
    with the victim's declared labels, its own generator; never another participant's
    records (perturbing them changes nothing), and nothing in an honest round."""
    config, program, view, keys, params = setting
    plan = dataclasses.replace(
        adversary_plan.Plan.from_config(config), upload=upload, ascent_rounds=(2,), attacks=("gan",)
    )
    state = adv.init_state(program, plan, params[0], view, keys, grid_shape=(10, 2, 28, 28, 1))
    state = state.replace(
        gan_start=jnp.array([1, 0]),  # run 0's generator runs, run 1's not
        last_update_norm=jnp.array([0.5, 2.0]),  # the last global update it saw
    )
    rng = np.random.default_rng(3)
    pool_x = jnp.asarray(rng.uniform(-1, 1, (12, 28, 28, 1)), jnp.float32)
    pool_y = jnp.asarray(np.arange(12) % 10, jnp.int32)

    def inputs_for(v, t=2):
        return adv.upload_inputs(plan, state, t, view=v, keys=keys, pool_x=pool_x, pool_y=pool_y)

    def same(a, b):
        np.testing.assert_array_equal(jax.random.key_data(a.key), jax.random.key_data(b.key))
        jax.tree.map(np.testing.assert_array_equal, a.replace(key=0), b.replace(key=0))

    inputs = inputs_for(view)
    x = np.array(view.own_x)
    others = ClientData(
        x=jnp.asarray(rng.uniform(-1, 1, (RUNS, 5, *x.shape[1:])), jnp.float32).at[:, 0].set(x),
        y=jnp.zeros((RUNS, 5, x.shape[1]), jnp.int32).at[:, 0].set(view.own_y),
        counts=jnp.full((RUNS, 5), 6).at[:, 0].set(view.own_count),
    )
    noised = adv.adversary_view(others, np.asarray(view.declared), adversary=0, victim=1)
    same(inputs, inputs_for(noised))
    want_key = jax.vmap(jax.random.fold_in, (0, None))(keys.upload, 2)
    np.testing.assert_array_equal(jax.random.key_data(inputs.key), jax.random.key_data(want_key))
    if upload == "gradient_ascent":  # the candidates of the victim's classes (1 and 6)
        np.testing.assert_array_equal(inputs.targets_x[1], pool_x)
        np.testing.assert_array_equal(inputs.weight[0], np.isin(np.arange(12) % 10, [1, 6]))
        gamma = plan.ascent_gamma  # the global model moves gamma last updates: N=5 x that
        np.testing.assert_allclose(inputs.step, [gamma * 5 * 0.5, gamma * 5 * 2.0], rtol=1e-6)
        assert inputs_for(view, t=3) is None  # not an ascent round: it uploads honestly
    else:
        jax.tree.map(np.testing.assert_array_equal, inputs.generator, state.gan.generator)
        np.testing.assert_array_equal(inputs.fake_label, [0, 0])  # its own first class
        np.testing.assert_array_equal(inputs.fake_classes, view.victim_labels)
        np.testing.assert_array_equal(inputs.active, [True, False])
