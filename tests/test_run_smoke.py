"""End to end through the launcher: files, fields, and metrics recomputed from the npz."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fedgan_jax.evaluation import metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config=configs/demo.py",
    "--config.data.max_train_per_class=40",
    "--config.fl.rounds=3",
    "--config.fl.batch_size=32",
    "--config.gan.trigger=round",
    "--config.gan.trigger_round=2",
    "--config.gan.steps_per_round=3",
    "--config.gan.batch_per_class=2",
    "--config.gan.channels=8",
    "--config.gan.samples_per_class=8",
    "--config.gan.figure_rounds=(3,)",
    "--config.gan.figure_per_class=2",
    "--config.attack.epochs=1",
    "--config.checkpoint.every=1",
]


def run_launcher(workdir, *extra, check=True):
    cmd = [sys.executable, "experiments/run.py", *TINY, f"--workdir={workdir}", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"launcher failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("smoke") / "run")
    proc = run_launcher(workdir)
    with open(os.path.join(workdir, "results.json")) as f:
        return workdir, json.load(f), proc


def test_launcher_writes_every_output(finished_run):
    workdir, results, proc = finished_run
    for name in (
        "config.json",
        "results.json",
        "metrics.csv",
        "membership.npz",
        "accuracy.png",
        "reconstructions.png",
        "roc.png",
        "tp_fn.png",
    ):
        path = os.path.join(workdir, name)
        assert os.path.getsize(path) > 0, name
    assert os.listdir(os.path.join(workdir, "checkpoints"))
    assert "final main-task accuracy" in proc.stdout
    lines = open(os.path.join(workdir, "metrics.csv")).read().strip().splitlines()
    assert lines[0].startswith("round,main_task_accuracy") and len(lines) == 1 + 3


def test_results_fields(finished_run):
    _, r, _ = finished_run
    assert len(r["main_task_accuracy"]) == 3
    assert r["final_main_task_accuracy"] == r["main_task_accuracy"][-1]
    assert 0.0 <= r["final_main_task_accuracy"] <= 1.0
    assert r["config"]["fl"]["rounds"] == 3 and r["wall_seconds"] > 0
    assert r["gan_start_round"] == 2
    assert r["victim_num_labels"] == 2 and len(r["victim_labels"]) == 2
    labels = sorted(sum(r["declared_labels"].values(), []))
    assert labels == list(range(10))  # disjoint and covering
    for key in ("global_model_accuracy", "attack_model_accuracy", "oracle_model_accuracy"):
        assert 0.0 <= r[key] <= 1.0
    assert r["global_model_accuracy"] == pytest.approx(r["final_main_task_accuracy"], abs=1e-6)
    assert set(r["attacks"]) == {"gan", "global_model", "oracle", "loss_threshold"}
    names = {
        "tp",
        "fn",
        "fp",
        "tn",
        "tpr",
        "fpr",
        "precision",
        "balanced_accuracy",
        "auc",
        "tpr_at_1pct_fpr",
        "tpr_at_0.1pct_fpr",
    }
    for per_protocol in r["attacks"].values():
        assert set(per_protocol) == {"paper", "strict"}
        for m in per_protocol.values():
            assert names <= set(m)
            assert m["tp"] + m["fn"] == r["client_records"][r["victim"]]
    assert r["d_gen"]["generated"] == 80 and 0 <= r["d_gen"]["kept"] <= 80
    # carried memory: at least the Table II params (4 B each) and every client image
    assert r["memory"]["state_bytes_per_run"] > 536_258 * 4
    images = 28 * 28 * 4 * sum(r["client_records"])
    assert images < r["memory"]["client_bytes_per_run"] < 2 * images + 5 * 64 * 28 * 28 * 4


def test_metrics_recomputed_from_npz_match_results(finished_run):
    workdir, r, _ = finished_run
    npz = np.load(os.path.join(workdir, "membership.npz"))
    for attack, per_protocol in r["attacks"].items():
        for protocol, reported in per_protocol.items():
            recomputed = metrics.membership_metrics(
                npz[f"is_member__{protocol}"],
                npz[f"score__{attack}__{protocol}"],
                npz[f"decision__{attack}__{protocol}"],
            )
            for name, value in recomputed.items():
                if value is None:
                    assert reported[name] is None
                else:
                    assert reported[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    # strict = paper + held-out records of the victim's classes, none of them members
    n_paper = len(npz["is_member__paper"])
    assert not npz["is_member__strict"][n_paper:].any()
    assert (npz["index__strict"][n_paper:] >= 400).all()  # pool: 400 train, then test


def test_bad_config_is_one_line_and_no_results(tmp_path):
    workdir = str(tmp_path / "bad")
    proc = run_launcher(workdir, "--config.fl.rounds=0", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == ("error: fl.rounds=0: must be an integer >= 1")
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(workdir, "results.json"))


def test_report_prints_every_attack_and_protocol_of_the_run(finished_run):
    workdir, r, _ = finished_run
    cmd = [sys.executable, "experiments/report.py", f"--workdir={workdir}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    rows = {
        tuple(cells[:2]): cells[2:6]
        for cells in (line.strip("| ").split(" | ") for line in out.splitlines())
        if len(cells) > 6 and cells[0] in r["attacks"]
    }
    for attack, per_protocol in r["attacks"].items():
        for protocol, m in per_protocol.items():
            counts = [str(m[name]) for name in ("tp", "fn", "fp", "tn")]
            assert rows[(attack, protocol)] == counts, (attack, protocol)


def test_benchmark_document_and_its_report(tmp_path):
    """A tiny benchmark run: every record present and the ratios derived from them."""
    path = str(tmp_path / "bench.json")
    cmd = [
        sys.executable,
        "experiments/benchmark.py",
        "--clients=2,3",
        "--records=64",
        "--batch_size=32",
        "--repeats=1",
        "--modes=engine_seq,engine_mesh,python_loop",
        "--cpu_devices=2",
        "--gan=false",
        "--profile=false",
        "--sweep_runs=",
        "--shadows=2",
        "--shadow_rounds=1",
        "--shadow_axes=map",
        "--torch_python=",
        f"--json={path}",
    ]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, timeout=900)
    with open(path) as f:
        doc = json.load(f)
    shadows = [rec for rec in doc["records"] if rec["mode"].startswith("lira_shadows_")]
    assert [rec["mode"] for rec in shadows] == ["lira_shadows_map"]
    for rec in shadows:  # LiRA's cost: S=2 shadow federations of the demo, one round timed
        assert rec["shadows"] == 2 and rec["rounds_per_federation"] == 150
        per_hour = 3600 / (rec["seconds_per_shadow_round"] * 150)
        assert rec["shadow_federations_per_hour"] == pytest.approx(per_hour) and per_hour > 0
    by = {(rec["mode"], rec["clients"]): rec for rec in doc["records"] if "clients" in rec}
    modes = ("engine_seq", "engine_mesh", "python_loop")
    assert set(by) == {(m, n) for m in modes for n in (2, 3)}
    # the CPU split in two for engine_mesh alone; 3 clients pad to 4 slots on 2 devices
    assert doc["devices"] == 2 and by[("engine_mesh", 3)]["devices"] == 2
    assert by[("engine_seq", 3)]["devices"] == 1
    # the peak is the faster of the sgemm at the start and at the end, and every
    # record's fraction is against it
    assert doc["sgemm_gflops"] == max(doc["sgemm_gflops_measured"])
    assert len(doc["sgemm_gflops_measured"]) == 2
    for rec in by.values():
        assert rec["fraction_of_peak"] == pytest.approx(
            rec["achieved_gflops"] / doc["sgemm_gflops"]
        )
    # XLA's count for one SGD step of the Table II MNIST CNN: ~9.2 MFLOP per sample
    assert 8e6 < doc["flops_per_sample"] < 11e6
    for rec in by.values():
        assert rec["samples_per_second"] > 0 and rec["backend"] == "cpu"
        expected = rec["samples_per_second"] * rec["flops_per_sample"] / 1e9
        assert rec["achieved_gflops"] == pytest.approx(expected)
    for n in (2, 3):
        ratio = (
            by[("engine_seq", n)]["samples_per_second"]
            / by[("python_loop", n)]["samples_per_second"]
        )
        assert doc["engine_over_python_loop"][str(n)] == pytest.approx(ratio)
    torch_path = tmp_path / "torch.jsonl"
    torch_path.write_text(
        json.dumps({"clients": 2, "threads": 2, "torch": "x", "samples_per_second": 100.0}) + "\n"
    )
    cmd = [sys.executable, "experiments/report.py", f"--benchmark={path}", f"--torch={torch_path}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    engine_2 = by[("engine_seq", 2)]["samples_per_second"]
    loop_2 = by[("python_loop", 2)]["samples_per_second"]
    assert f"| 2 | {engine_2 / loop_2:.2f} | n/a | {engine_2 / 100.0:.2f} (pytorch_loop) |" in out
    assert f"| 3 | {doc['engine_over_python_loop']['3']:.2f} | n/a | n/a |" in out
