"""The typed run state: immutable pytrees with a run axis, orbax round trips, key streams,
and `over_runs` (one run = a batch of one)."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedgan_jax.driver import state as st
from fedgan_jax.driver.checkpointing import Checkpointer
from fedgan_jax.driver.engine import RunSpec, over_runs


def _run_state(runs=2, rounds=4):
    params = {"w": jnp.arange(runs * 6, dtype=jnp.float32).reshape(runs, 2, 3)}
    adversary = st.AdversaryState(
        latest=params,
        gan={"g": jnp.ones((runs, 5))},
        gan_start=jnp.array([0, 3][:runs], jnp.int32),
        snapshots=st.Snapshots(
            round=jnp.array([2, 4], jnp.int32),
            params={"w": jnp.zeros((runs, 2, 2, 3))},
        ),
        grids={"first": jnp.zeros((runs, 1, 1, 2, 2, 1))},
        own_accuracy=jnp.full((runs, rounds), jnp.nan),
        generator_loss=jnp.full((runs, rounds), jnp.nan),
        generator_fooled=jnp.full((runs, rounds), jnp.nan),
    )
    return st.RunState(
        server=st.ServerState(params=params, round=jnp.asarray(3, jnp.int32)),
        adversary=adversary,
        log=st.eval_log(runs, rounds, 5),
    )


def test_states_are_immutable_pytrees_with_a_run_axis():
    s = _run_state()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server.round = 4
    # every array carries the run axis, except the shared round counters
    shared = {id(s.server.round), id(s.adversary.snapshots.round)}
    assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(s) if id(leaf) not in shared)
    moved = s.replace(log=s.log.replace(accuracy=st.put_row(s.log.accuracy, 2, [0.5, 0.7])))
    np.testing.assert_array_equal(moved.log.accuracy[:, 1], np.float32([0.5, 0.7]))
    assert float(jnp.abs(s.log.accuracy).sum()) == 0.0  # the original is untouched
    assert s.round == 3 and isinstance(s.round, int)


def test_orbax_round_trip_restores_the_typed_state(tmp_path):
    s = _run_state()
    s = s.replace(log=s.log.replace(client_loss=s.log.client_loss + 1.5))
    ckpt = Checkpointer(str(tmp_path / "ckpt"), every=1, keep=1, last_round=3)
    assert ckpt.maybe_save(s)
    target = _run_state()  # a fresh state of the same shapes
    restored = ckpt.restore(target)
    ckpt.close()
    assert type(restored) is st.RunState and type(restored.adversary) is st.AdversaryState
    chex.assert_trees_all_equal(jax.device_get(restored), jax.device_get(s))


def test_resumable_round_is_read_from_disk_not_from_the_last_finished_save(tmp_path):
    """A Ctrl-C can land after orbax has put round 3 on disk but before `maybe_save`
    returned: the resume line must name the round on disk (it once said 0)."""
    import orbax.checkpoint as ocp

    from fedgan_jax.driver.checkpointing import _host

    ckpt = Checkpointer(str(tmp_path / "ckpt"), every=1, keep=1, last_round=3)
    other = Checkpointer(str(tmp_path / "ckpt"), every=1, keep=1, last_round=3)
    assert ckpt.saved == 0 and ckpt.resumable_round() == 0
    # the save completes on disk through another manager: `ckpt` never saw it return
    other.manager.save(3, args=ocp.args.StandardSave(_host(_run_state())), force=True)
    other.manager.wait_until_finished()
    assert ckpt.saved == 0 and ckpt.resumable_round() == 3
    ckpt.close()
    other.close()


def test_derive_keys_gives_each_role_its_own_streams():
    seeds = jnp.stack([jax.random.key(0), jax.random.key(5)])
    server, adversary, evaluation = st.derive_keys(seeds)
    for role, names in ((server, ("init", "fl")), (adversary, ("gan", "sample", "upload"))):
        for name in names:
            for r, seed in enumerate((0, 5)):
                expected = jax.random.fold_in(jax.random.key(seed), st.STREAMS[name])
                np.testing.assert_array_equal(
                    jax.random.key_data(getattr(role, name)[r]), jax.random.key_data(expected)
                )
    all_keys = [*jax.tree.leaves(server), *jax.tree.leaves(adversary), evaluation.oracle]
    data = {tuple(np.asarray(jax.random.key_data(k[0])).tolist()) for k in all_keys}
    assert len(data) == len(all_keys)  # no stream is shared between roles


@pytest.mark.parametrize("runs", [1, 3])
def test_over_runs_maps_one_function_over_the_run_axis(runs):
    def fn(x, shared, scale):
        total = jax.lax.cond(scale > 0, lambda: x.sum() * scale, lambda: -x.sum())
        return {"total": total + shared.sum(), "twice": 2 * x}

    x = jnp.arange(runs * 4, dtype=jnp.float32).reshape(runs, 4)
    shared = jnp.ones(3)
    scale = jnp.array([2.0, -1.0, 3.0][:runs])
    out = over_runs(fn, runs, (0, None, 0))(x, shared, scale)
    for r in range(runs):  # every run computed on its own slice
        expected = fn(x[r], shared, scale[r])
        np.testing.assert_allclose(out["total"][r], expected["total"])
        np.testing.assert_allclose(out["twice"][r], expected["twice"])
    assert out["twice"].shape == (runs, 4)


def test_run_spec_names_applies_and_groups_by_program():
    run = RunSpec(
        (
            ("gan.mode", "adversarial"),
            ("fl.noise_multiplier", 0.5),
            ("fl.victim_num_labels", 2),
            ("seed", 1),
        )
    )
    assert run.name == "adversarial_noise_multiplier=0.5_k2_seed1"
    assert run.program_key == (("gan.mode", "adversarial"), ("fl.noise_multiplier", 0.5))
    from tests.conftest import tiny_config

    c = run.apply(tiny_config())
    assert (c.gan.mode, c.fl.noise_multiplier, c.fl.victim_num_labels, c.seed) == (
        "adversarial",
        0.5,
        2,
        1,
    )
