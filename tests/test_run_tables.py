"""driver.run_tables: the protocols' tables recomputed from membership.npz, the DP sweep's
rows, and experiments/membership_report.py and privacy_figure.py run end to end."""

import json
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fedgan_jax.driver import run_tables


def _fake_run(path, seed: int) -> None:
    """A run's membership.npz as `driver.outputs` writes it: the paper's targets (members,
    then other participants' records), and the strict ones (the same, then held-out records
    of the victim's classes). Members score 2 + noise, other participants' records 5 (above
    every member: a label-free score), held-out records 0 + noise (below every member)."""
    rng = np.random.default_rng(seed)
    members, others, held = 6, 8, 5
    paper_member = np.r_[np.ones(members, bool), np.zeros(others, bool)]
    paper_score = np.r_[2 + rng.random(members), np.full(others, 5.0)]
    strict_member = np.r_[paper_member, np.zeros(held, bool)]
    strict_score = np.r_[paper_score, rng.random(held)]
    os.makedirs(path)
    np.savez(
        os.path.join(path, "membership.npz"),
        index__paper=np.arange(members + others),
        is_member__paper=paper_member,
        score__loss__paper=paper_score,
        index__strict=np.arange(members + others + held),
        is_member__strict=strict_member,
        score__loss__strict=strict_score,
    )
    with open(os.path.join(path, "results.json"), "w") as f:
        json.dump({}, f)


def test_protocols_keep_the_records_each_protocol_names(tmp_path):
    _fake_run(tmp_path / "f_seed0", 0)
    npz = np.load(tmp_path / "f_seed0" / "membership.npz")
    within = run_tables.membership_scores(str(tmp_path / "f_seed0"), "within")["loss"]
    strict = run_tables.membership_scores(str(tmp_path / "f_seed0"), "strict")["loss"]
    paper = run_tables.membership_scores(str(tmp_path / "f_seed0"), "paper")["loss"]
    assert within[0] == 1.0  # held-out records only: every member above them
    assert paper[0] == 0.0  # others only: every member below them
    want = roc_auc_score(npz["is_member__strict"], npz["score__loss__strict"])
    assert strict[0] == pytest.approx(want)  # both: an AUC strictly between
    assert 0 < strict[0] < 1
    with pytest.raises(ValueError, match="protocol"):
        run_tables.membership_scores(str(tmp_path / "f_seed0"), "server")


def test_runs_from_several_folders_are_grouped_by_setting(tmp_path):
    for seed in range(3):
        _fake_run(tmp_path / f"frontier_seed{seed}", seed)
    os.makedirs(tmp_path / "sweep" / "runs")
    _fake_run(tmp_path / "sweep" / "runs" / "k2_seed0", 9)
    os.makedirs(tmp_path / "sweep" / "runs" / "k2_seed1")  # unfinished: no results.json
    found = run_tables.run_dirs(
        [str(tmp_path / f"frontier_seed{s}") for s in range(3)] + [str(tmp_path / "sweep")]
    )
    assert len(found) == 4
    lines = run_tables.membership_table(found, "within")
    assert any(line.startswith("| frontier | loss | 3 | 1.000 ± 0.000 |") for line in lines)
    assert any(line.startswith("| k2 | loss | 1 | 1.000 |") for line in lines)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        run_tables.run_dirs([str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match="no finished run"):
        run_tables.run_dirs([str(tmp_path / "sweep" / "runs" / "k2_seed1")])


def test_setting_drops_the_seed_wherever_the_sweep_put_it():
    assert run_tables.setting_of("runs/k2_seed0") == "k2"
    assert run_tables.setting_of("x/noise_multiplier=0.5_seed12_k2/") == "noise_multiplier=0.5_k2"
    assert run_tables.setting_of("split_seed=3_seed1") == "split_seed=3"  # not a seed axis
    assert run_tables.setting_of("seed4") == "seed4"  # nothing but the seed: kept


def _dp_run(root, name, eps, acc, tpr):
    os.makedirs(root / "runs" / name)
    result = {
        "privacy": {"epsilon": eps, "delta": 1e-5},
        "final_main_task_accuracy": acc,
        "attacks": {"gan": {"paper": {"tpr_at_1pct_fpr": tpr}}, "oracle": None},
    }
    (root / "runs" / name / "results.json").write_text(json.dumps(result))


def test_privacy_rows_group_seeds_and_put_no_dp_last(tmp_path):
    from fedgan_jax.evaluation import plots

    _dp_run(tmp_path, "noise_multiplier=0.0_k2_seed0", None, 0.9, 0.5)
    _dp_run(tmp_path, "noise_multiplier=1.0_k2_seed0", 40.0, 0.7, 0.2)
    _dp_run(tmp_path, "noise_multiplier=1.0_k2_seed1", 40.0, 0.5, 0.4)
    rows = run_tables.privacy_rows(run_tables.run_dirs([str(tmp_path)]), "paper")
    assert [r["setting"] for r in rows] == ["noise_multiplier=1.0_k2", "noise_multiplier=0.0_k2"]
    assert rows[0]["seeds"] == 2 and rows[0]["epsilon"] == 40.0
    # (mean, std ddof=1, 95% t half-width); two seeds: t_{0.975,1} = tan(0.475 pi)
    std = 0.1 * np.sqrt(2)
    half = np.tan(0.475 * np.pi) * std / np.sqrt(2)
    assert rows[0]["accuracy"] == pytest.approx((0.6, std, half))
    assert rows[0]["gan"] == pytest.approx((0.3, std, half)) and "oracle" not in rows[0]
    assert rows[1]["epsilon"] is None and rows[1]["accuracy"] == (0.9, None, None)
    plots.privacy_utility_attack(rows, str(tmp_path / "figure.png"))
    assert os.path.getsize(tmp_path / "figure.png") > 0


def test_both_launchers_run_end_to_end(tmp_path):
    """The launchers as a user runs them: each in its own process (their absl flags share
    names, as every launcher's ``--workdir`` does), tables printed, files written."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in range(2):
        _fake_run(tmp_path / "runs" / f"frontier_seed{seed}", seed)
    report = subprocess.run(
        [
            sys.executable,
            "experiments/membership_report.py",
            f"--workdir={tmp_path}",
            "--protocols=within,paper",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "\nwithin\n" in report and "\npaper\n" in report
    assert "| frontier | loss | 2 | 1.000 ± 0.000 |" in report  # within: members above all
    assert "| frontier | loss | 2 | 0.000 ± 0.000 |" in report  # paper: members below all
    bad = subprocess.run(
        [
            sys.executable,
            "experiments/membership_report.py",
            f"--workdir={tmp_path}",
            "--protocols=server",
        ],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "server" in bad.stderr

    dp = tmp_path / "dp"
    _dp_run(dp, "noise_multiplier=1.0_seed0", 8.0, 0.7, 0.2)
    _dp_run(dp, "noise_multiplier=0.0_seed0", None, 0.9, 0.5)
    subprocess.run(
        [sys.executable, "experiments/privacy_figure.py", f"--workdir={dp}"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert os.path.getsize(dp / "privacy_utility_attack.png") > 0
    with open(dp / "privacy_utility_attack.csv") as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("setting,seeds,epsilon") and len(lines) == 3
    assert lines[1].startswith("noise_multiplier=1.0,1,8.0")
