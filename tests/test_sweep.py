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
        assert result["victim_num_labels"] == r.victim_num_labels
        assert result["config"]["seed"] == r.seed
        assert len(result["victim_labels"]) == r.victim_num_labels
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
        if r.victim_num_labels == 3
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


def test_batched_sweep_matches_sequential(sequential, tmp_path):
    from tests.conftest import tiny_config

    config, seq_dir, _ = sequential
    batched = _sweep_config(tiny_config(), batched=True)
    batched.sweep.runs_per_batch = 3  # a batch of 3 and a batch of 1: both paths
    run_sweep(batched, str(tmp_path), progress=False)
    for r in sweep_runs(config):
        a = io.read_json(os.path.join(run_dir(seq_dir, r), "results.json"))
        b = io.read_json(os.path.join(run_dir(str(tmp_path), r), "results.json"))
        assert a["declared_labels"] == b["declared_labels"]
        np.testing.assert_allclose(a["main_task_accuracy"], b["main_task_accuracy"], atol=0.01)
        for attack in ("gan", "global_model"):
            for protocol in ("paper", "strict"):
                assert a["attacks"][attack][protocol]["auc"] == pytest.approx(
                    b["attacks"][attack][protocol]["auc"], abs=0.03
                )
