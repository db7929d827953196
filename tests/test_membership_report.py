"""experiments/membership_report.py: the protocols' tables recomputed from membership.npz."""

import json
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from experiments import membership_report


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
    within = membership_report.within_class(str(tmp_path / "f_seed0"), "within")["loss"]
    strict = membership_report.within_class(str(tmp_path / "f_seed0"), "strict")["loss"]
    paper = membership_report.within_class(str(tmp_path / "f_seed0"), "paper")["loss"]
    assert within[0] == 1.0  # held-out records only: every member above them
    assert paper[0] == 0.0  # others only: every member below them
    want = roc_auc_score(npz["is_member__strict"], npz["score__loss__strict"])
    assert strict[0] == pytest.approx(want)  # both: an AUC strictly between
    assert 0 < strict[0] < 1
    with pytest.raises(ValueError, match="protocol"):
        membership_report.within_class(str(tmp_path / "f_seed0"), "server")


def test_runs_from_several_folders_are_grouped_by_setting(tmp_path):
    for seed in range(3):
        _fake_run(tmp_path / f"frontier_seed{seed}", seed)
    os.makedirs(tmp_path / "sweep" / "runs")
    _fake_run(tmp_path / "sweep" / "runs" / "k2_seed0", 9)
    os.makedirs(tmp_path / "sweep" / "runs" / "k2_seed1")  # unfinished: no results.json
    found = membership_report.run_dirs(
        [str(tmp_path / f"frontier_seed{s}") for s in range(3)] + [str(tmp_path / "sweep")]
    )
    assert len(found) == 4
    lines = membership_report.table(found, "within")
    assert any(line.startswith("| frontier | loss | 3 | 1.000 ± 0.000 |") for line in lines)
    assert any(line.startswith("| k2 | loss | 1 | 1.000 |") for line in lines)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        membership_report.run_dirs([str(tmp_path / "missing")])
    with pytest.raises(FileNotFoundError, match="no finished run"):
        membership_report.run_dirs([str(tmp_path / "sweep" / "runs" / "k2_seed1")])
