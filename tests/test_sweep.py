"""Sweeps: one launch over k x seeds, summary files, resume, and batched == sequential."""

import math
import os

import numpy as np
import pytest

from fedgan_jax.core import io
from fedgan_jax.driver.sweep import run_dir, run_sweep, sweep_runs


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
    assert row["tpr_ci95"] == pytest.approx(T_975_DF1 * np.std(tprs, ddof=1) / np.sqrt(2))
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
    from fedgan_jax.core.errors import ConfigError
    from tests.conftest import tiny_config

    config = tiny_config()
    config.sweep.axes = axes
    with pytest.raises(ConfigError) as info:
        run_sweep(config, str(tmp_path / "sweep"), progress=False)
    assert message in str(info.value)
    assert not os.path.exists(tmp_path / "sweep")


# Summary statistics over seeds on hand-made results (no runs): the 95% t-interval.
# Student's t quantiles in closed form: df=1 is Cauchy, t = tan(pi (p - 1/2)); df=2 has
# t = (2p - 1) / sqrt(2 p (1 - p)).
T_975_DF1 = math.tan(math.pi * 0.475)  # 12.7062...: two seeds
T_975_DF2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)  # 4.3027...: three seeds
SEEDS3 = [0.1, 0.2, 0.6]  # mean 0.3, squared deviations 0.04 + 0.01 + 0.09 = 0.14
HALF3 = T_975_DF2 * np.sqrt(0.14 / 2) / np.sqrt(3)  # ddof=1: 0.14 / (3 - 1); = 0.657218...


def _config(attacks=("gan",), protocols=("paper",)):
    from types import SimpleNamespace

    return SimpleNamespace(attack=SimpleNamespace(attacks=attacks, protocols=protocols))


def _result(value, main_task=(0.9,)):
    from fedgan_jax.driver.sweep_report import ACCURACY_FIELDS, SUMMARY_METRICS

    return {
        "attacks": {"gan": {"paper": dict.fromkeys(SUMMARY_METRICS, value)}},
        **dict.fromkeys(ACCURACY_FIELDS, value),
        "d_gen": {"diversity": value, "real_diversity": 18.0},
        "main_task_accuracy": list(main_task),
    }


def _seed_runs(k, values):
    from fedgan_jax.driver.engine import RunSpec

    return {
        RunSpec((("fl.victim_num_labels", k), ("seed", s))): _result(v)
        for s, v in enumerate(values)
    }


def test_t_half_width_matches_known_t_quantiles():
    from fedgan_jax.evaluation.intervals import ci95_half_width

    assert ci95_half_width(1.0, 2) == pytest.approx(T_975_DF1 / np.sqrt(2), rel=1e-12)
    assert ci95_half_width(1.0, 3) == pytest.approx(T_975_DF2 / np.sqrt(3), rel=1e-12)
    # df=30 from published tables (2.042) to the digits scipy gives
    assert ci95_half_width(1.0, 31) == pytest.approx(2.0422724563012 / np.sqrt(31), rel=1e-12)
    assert ci95_half_width(None, 3) is None and ci95_half_width(0.5, 1) is None


def test_a_cell_shows_the_interval_the_mean_alone_or_nothing():
    from fedgan_jax.evaluation.intervals import cell

    assert cell(0.5, 0.0123) == "0.500 ± 0.012"
    assert cell(12.0, 3.21, 1) == "12.0 ± 3.2"
    assert cell(0.5, None) == "0.500" and cell(None, None) == "n/a"


def test_summary_ci95_is_the_t_half_width_and_summary_md_shows_it(tmp_path):
    from fedgan_jax.driver import sweep_report
    from fedgan_jax.evaluation import intervals

    results = {**_seed_runs(2, SEEDS3), **_seed_runs(1, [0.5])}
    groups = sweep_report._groups(list(results))
    rows = sweep_report._attack_rows(_config(), groups, results)
    three, one = rows
    assert (three["k"], three["seeds"], one["k"], one["seeds"]) == (2, 3, 1, 1)
    assert three["tpr_mean"] == pytest.approx(0.3)
    assert three["tpr_std"] == pytest.approx(np.std(SEEDS3, ddof=1))
    assert three["tpr_ci95"] == pytest.approx(HALF3, rel=1e-9)
    # neither the normal 1.96 nor ddof=0 gives it
    assert abs(three["tpr_ci95"] - 1.96 * np.std(SEEDS3, ddof=1) / np.sqrt(3)) > 0.3
    assert abs(three["tpr_ci95"] - T_975_DF2 * np.std(SEEDS3) / np.sqrt(3)) > 0.1
    assert one["tpr_mean"] == 0.5 and one["tpr_std"] is None and one["tpr_ci95"] is None
    accuracy = sweep_report._accuracy_rows(groups, results)
    assert accuracy[0]["final_main_task_accuracy_ci95"] == pytest.approx(HALF3, rel=1e-9)
    assert accuracy[0]["d_gen_diversity_ci95"] == pytest.approx(HALF3, rel=1e-9)
    assert accuracy[1]["wall_seconds_ci95"] is None

    tables = {"rows": rows, "accuracy": accuracy, "upload_cost": []}
    sweep_report._write_tables(str(tmp_path), tables)
    text = (tmp_path / "summary.md").read_text()
    assert f"| gan | paper | 2 | 3 | 0.300 ± {HALF3:.3f} |" in text  # TPR: mean ± half-width
    assert "| gan | paper | 1 | 1 | 0.500 | 0.500 |" in text  # one seed: the mean alone
    assert f"| 2 | 3 | 0.300 ± {HALF3:.3f} |" in text  # the accuracy table
    assert text.count(intervals.NOTE) == 2  # under each table
    assert "n = seeds" in intervals.NOTE and "95% t-interval" in intervals.NOTE
    with open(tmp_path / "summary.csv") as f:
        header = f.readline().strip().split(",")
    assert header[header.index("tpr_mean") :][:3] == ["tpr_mean", "tpr_std", "tpr_ci95"]


def test_upload_cost_deltas_carry_the_t_half_width():
    from fedgan_jax.driver import sweep_report
    from fedgan_jax.driver.engine import RunSpec
    from fedgan_jax.evaluation import intervals

    results = {}
    for s, honest_acc in enumerate((0.8, 0.7, 0.3)):  # malicious 0.9: deltas 0.1, 0.2, 0.6
        upload = {"rounds": [2], "accuracy_at": [0.9], "accuracy_next": 0.9, "final_accuracy": 0.9}
        for mode in ("honest", "gradient_ascent"):
            r = RunSpec((("adversary.upload", mode), ("seed", s)))
            results[r] = {"main_task_accuracy": [0.5, honest_acc, 0.9], "upload": upload}
    rows = sweep_report.upload_cost_rows(sweep_report._groups(list(results)), results)
    (row,) = rows
    assert row["accuracy_at_delta_mean"] == pytest.approx(0.3)
    assert row["accuracy_at_delta_ci95"] == pytest.approx(HALF3, rel=1e-9)
    assert row["accuracy_at_ci95"] == pytest.approx(0.0)  # 0.9 in every seed
    assert row["final_accuracy_delta_ci95"] == pytest.approx(0.0)
    text = sweep_report.upload_markdown(rows)
    assert f"| gradient_ascent | 3 | 0.900 ± 0.000 (0.300 ± {HALF3:.3f}) |" in text
    assert intervals.NOTE in text


def test_rerender_adds_ci95_to_a_summary_csv_without_it(tmp_path):
    """An older sweep's summary.csv (mean and std only) gets the same ci95 and table."""
    from fedgan_jax.driver import sweep_report

    results = {**_seed_runs(2, SEEDS3), **_seed_runs(1, [0.5])}
    groups = sweep_report._groups(list(results))
    rows = sweep_report._attack_rows(_config(), groups, results)
    sweep_report._write_tables(str(tmp_path), {"rows": rows, "accuracy": [], "upload_cost": []})
    expected = (tmp_path / "summary.md").read_text()
    old = [{k: v for k, v in r.items() if not k.endswith("_ci95")} for r in rows]
    io.write_csv(str(tmp_path / "summary.csv"), list(old[0]), [list(r.values()) for r in old])
    (tmp_path / "summary.md").write_text("old")
    tables = sweep_report.rerender(str(tmp_path))
    assert tables["rows"][0]["tpr_ci95"] == pytest.approx(HALF3, rel=1e-9)
    assert tables["rows"][1]["tpr_ci95"] is None
    assert list(tables["rows"][0]) == [str(k) for k in rows[0]]  # ci95 back beside std
    assert (tmp_path / "summary.md").read_text() == expected


def test_tp_fn_by_k_error_bars_are_the_t_half_width(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from fedgan_jax.evaluation import plots

    drawn = []
    bar = Axes.bar

    def spy(self, x, height, *args, **kwargs):
        drawn.append((kwargs.get("label"), list(height), list(kwargs["yerr"])))
        return bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", spy)
    per_seed = [{"tp": v, "fn": 1 - v, "fp": 0.0} for v in SEEDS3]
    plots.tp_fn_by_k(
        str(tmp_path / "f.png"), {"gan": {"paper": {2: per_seed, 5: [{"tp": 1, "fn": 0, "fp": 0}]}}}
    )
    label, means, yerr = drawn[0]
    assert label == "TP" and means == pytest.approx([0.3, 1.0])
    assert yerr[0] == pytest.approx(HALF3, rel=1e-9) and np.isnan(yerr[1])  # one seed: none


def test_figures_by_k_draw_an_attack_no_run_scored(tmp_path, monkeypatch):
    """An attack without results (the gan attack when no generator started) gets an empty
    panel, not a crash that loses the sweep's summary figures; the TP/FN/FP key goes on
    the first panel with bars, not on the empty one, and an empty ROC panel gets no key
    (matplotlib warns of an empty legend)."""
    import warnings

    import matplotlib.pyplot as plt

    from fedgan_jax.evaluation import plots

    one = [{"tp": 1, "fn": 0, "fp": 0}]
    path = tmp_path / "f.png"
    legends = []
    savefig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        legends.extend(ax.get_title() for ax in fig.axes if ax.get_legend() is not None)
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.tp_fn_by_k(
            str(path), {"gan": {"paper": {2: []}}, "global_model": {"paper": {2: one}}}
        )
    assert path.stat().st_size > 0
    assert legends == ["global model, paper"]
    legends.clear()
    truth, scores = np.array([True, False, True]), np.array([0.9, 0.1, 0.4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curves = {"paper": {"gan": {}, "global_model": {2: (truth, scores)}}}
        plots.roc_by_k(str(tmp_path / "roc.png"), curves)
    assert legends == ["global model, paper (linear)"]


def test_a_diverged_setting_is_recorded_and_the_sweep_goes_on(tmp_path, tiny):
    """A setting whose federation diverges (here a learning rate of 1e9) stops its own run,
    not the sweep: the setting after it still runs, the summary covers it, and the
    diverged run has failed.json and is listed; the mark is removed once the run succeeds."""
    tiny.fl.rounds = 2
    tiny.attack.attacks = ("global_model",)
    tiny.checkpoint.every = 0
    tiny.sweep.axes = (("fl.learning_rate", (1e9, 0.05)),)
    tiny.sweep.label_counts, tiny.sweep.seeds = (2,), (0,)
    workdir = str(tmp_path / "sweep")
    summary = run_sweep(tiny, workdir, progress=False)
    bad, good = sweep_runs(tiny)
    assert [name for name, _ in summary["failed"]] == [bad.name]
    assert "non-finite" in summary["failed"][0][1]
    failed = io.read_json(os.path.join(run_dir(workdir, bad), "failed.json"))
    assert "non-finite" in failed["error"]
    assert not os.path.exists(os.path.join(run_dir(workdir, bad), "results.json"))
    assert os.path.exists(os.path.join(run_dir(workdir, good), "results.json"))
    assert {r["fl.learning_rate"] for r in summary["rows"]} == {0.05}
    md = open(os.path.join(workdir, "summary.md")).read()
    assert "Stopped on non-finite values" in md and bad.name in md
    # what the sweep does after a run of the batch succeeds
    from fedgan_jax.driver import sweep

    sweep._mark_failed([run_dir(workdir, bad)], [])
    assert not os.path.exists(os.path.join(run_dir(workdir, bad), "failed.json"))
