"""Sweeps: one launch over k x seeds, summary files, resume, and batched == sequential."""

import os

import numpy as np
import pytest

from fedgan_jax import io
from fedgan_jax.sweep import run_dir, run_sweep, sweep_runs


def _sweep_config(tiny, batched):
    tiny.sweep.label_counts = (1, 3)
    tiny.sweep.seeds = (0, 1)
    tiny.sweep.batched = batched
    tiny.attack.attacks = ("gan", "global_model")
    tiny.checkpoint.every = 0
    return tiny


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    from tests.conftest import tiny_config

    workdir = str(tmp_path_factory.mktemp("sweep") / "seq")
    config = _sweep_config(tiny_config(), batched=False)
    return config, workdir, run_sweep(config, workdir, progress=False)


def test_sweep_writes_every_run_and_the_summary(sequential):
    config, workdir, summary = sequential
    runs = sweep_runs(config)
    assert [r.name for r in runs] == ["k1_seed0", "k1_seed1", "k3_seed0", "k3_seed1"]
    for r in runs:
        result = io.read_json(os.path.join(run_dir(workdir, r), "results.json"))
        assert result["victim_num_labels"] == r.get("fl.victim_num_labels")
        assert result["config"]["seed"] == r.get("seed")
        assert len(result["victim_labels"]) == r.get("fl.victim_num_labels")
    for name in (
        "summary.csv",
        "summary.md",
        "tp_fn_by_k.png",
        "roc_by_k.png",
        "accuracy_by_run.png",
    ):
        assert os.path.getsize(os.path.join(workdir, name)) > 0
    # 2 attacks x 2 protocols x 2 k values, each a mean over the 2 seeds
    assert len(summary["rows"]) == 8
    row = next(
        r
        for r in summary["rows"]
        if (r["attack"], r["protocol"], r["k"]) == ("global_model", "paper", 3)
    )
    tprs = [
        io.read_json(os.path.join(run_dir(workdir, r), "results.json"))["attacks"]["global_model"][
            "paper"
        ]["tpr"]
        for r in runs
        if r.get("fl.victim_num_labels") == 3
    ]
    assert row["tpr_mean"] == pytest.approx(np.mean(tprs))
    assert row["tpr_std"] == pytest.approx(np.std(tprs, ddof=1))
    table = open(os.path.join(workdir, "summary.md")).read()
    assert "| global_model | paper | 3 | 2 |" in table


def test_sweep_picks_up_finished_runs(sequential):
    config, workdir, _ = sequential
    runs = sweep_runs(config)
    kept = os.path.join(run_dir(workdir, runs[0]), "results.json")
    redo = os.path.join(run_dir(workdir, runs[1]), "results.json")
    kept_mtime = os.path.getmtime(kept)
    before = io.read_json(redo)
    os.remove(redo)  # as if the sweep had been killed during this run
    run_sweep(config, workdir, progress=False)
    assert os.path.getmtime(kept) == kept_mtime  # not redone
    after = io.read_json(redo)
    assert after["main_task_accuracy"] == before["main_task_accuracy"]
    assert after["attacks"] == before["attacks"]


@pytest.mark.parametrize("run_batching", ["map", "vmap"])
def test_batched_sweep_matches_sequential(sequential, tmp_path, run_batching):
    """'map' runs each run of a batch exactly as alone: every number is bit-identical.
    'vmap' batches the arithmetic (and turns the client loop's conds into selects), so its
    floats differ a little from the runs alone."""
    from tests.conftest import tiny_config

    config, seq_dir, _ = sequential
    batched = _sweep_config(tiny_config(), batched=True)
    batched.sweep.runs_per_batch = 3  # a batch of 3 and a batch of 1: both paths
    batched.sweep.run_batching = run_batching
    run_sweep(batched, str(tmp_path), progress=False)
    for r in sweep_runs(config):
        a = io.read_json(os.path.join(run_dir(seq_dir, r), "results.json"))
        b = io.read_json(os.path.join(run_dir(str(tmp_path), r), "results.json"))
        assert a["declared_labels"] == b["declared_labels"]
        if run_batching == "map":
            same = ("main_task_accuracy", "gan_start_round", "attack_model_accuracy", "attacks")
            assert {f: a[f] for f in same} == {f: b[f] for f in same}
            continue
        np.testing.assert_allclose(a["main_task_accuracy"], b["main_task_accuracy"], atol=0.01)
        for attack in ("gan", "global_model"):
            for protocol in ("paper", "strict"):
                assert a["attacks"][attack][protocol]["auc"] == pytest.approx(
                    b["attacks"][attack][protocol]["auc"], abs=0.03
                )


def test_any_config_field_is_a_sweep_axis(tmp_path):
    from tests.conftest import tiny_config

    config = tiny_config()
    config.sweep.axes = (("fl.learning_rate", (0.05, 0.02)),)
    config.sweep.label_counts = (2,)
    config.sweep.seeds = (0,)
    config.attack.attacks = ("global_model",)
    config.checkpoint.every = 0
    runs = sweep_runs(config)
    assert [r.name for r in runs] == ["learning_rate=0.05_k2_seed0", "learning_rate=0.02_k2_seed0"]
    summary = run_sweep(config, str(tmp_path), progress=False)
    accuracies = []
    for r, lr in zip(runs, (0.05, 0.02), strict=True):
        result = io.read_json(os.path.join(run_dir(str(tmp_path), r), "results.json"))
        assert result["config"]["fl"]["learning_rate"] == lr
        accuracies.append(result["main_task_accuracy"])
    assert accuracies[0] != accuracies[1]  # the axis reached the federation
    assert {row["fl.learning_rate"] for row in summary["rows"]} == {0.05, 0.02}
    assert "| global_model | paper | 0.05 | 2 | 1 |" in open(tmp_path / "summary.md").read()


@pytest.mark.parametrize(
    "axes, message",
    [
        ((("fl.no_such_field", (1, 2)),), "no config field 'fl.no_such_field'"),
        ((("seed", (1, 2)),), "seed has its own axis field, sweep.seeds"),
        ((("fl.learning_rate", ()),), "must be (field, (value, ...))"),
        ((("fl.learning_rate", (0.1, 0.1)),), "has a duplicate entry"),
        ((("fl.learning_rate", (0.1, -1.0)),), "fl.learning_rate=-1.0: must lie in (0.0, inf]"),
    ],
)
def test_bad_sweep_axes_are_refused_before_any_run(tmp_path, axes, message):
    from fedgan_jax.errors import ConfigError
    from tests.conftest import tiny_config

    config = tiny_config()
    config.sweep.axes = axes
    with pytest.raises(ConfigError) as info:
        run_sweep(config, str(tmp_path / "sweep"), progress=False)
    assert message in str(info.value)
    assert not os.path.exists(tmp_path / "sweep")
