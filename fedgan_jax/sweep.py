"""A sweep over the victim's label count k and seeds (paper Figs. 6-8), resumable.

Every run of a sweep has the same shapes (clients padded to the sweep's largest client),
so one `Engine` serves all of them and nothing recompiles between runs. Two schedules:

* ``sweep.batched=False`` (default): runs one after another. Memory of one run; the
  compiled round, generator and attack functions are reused.
* ``sweep.batched=True``: ``sweep.runs_per_batch`` runs (0: all) as one computation,
  vmapped over a leading run axis. R times the memory of one run (client data, params,
  generator state); on an accelerator that is idle with one small federation this
  multiplies throughput; on a 2-core CPU it runs at about the sequential speed.

Each run writes its own folder ``runs/k{k}_seed{s}/`` (results.json, membership.npz,
figures). A run whose results.json exists for the same config is not redone, and an
interrupted run resumes from its checkpoint. The sweep then writes ``summary.csv``,
``summary.md`` (every attack x protocol x k, mean and standard deviation over seeds) and
the figures ``tp_fn_by_k.png``, ``roc_by_k.png``, ``accuracy_by_run.png``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import logging

from fedgan_jax import config_lib, io, plots
from fedgan_jax.checkpointing import claim_workdir
from fedgan_jax.experiment import load_data, run_batch, run_config
from fedgan_jax.simulation import Engine, RunSpec, common_capacity

SUMMARY_METRICS = (
    "tpr",
    "fpr",
    "precision",
    "balanced_accuracy",
    "auc",
    "tpr_at_1pct_fpr",
    "tpr_at_0.1pct_fpr",
    "tp",
    "fn",
    "fp",
    "tn",
)


def sweep_runs(config) -> list[RunSpec]:
    return [RunSpec(int(s), int(k)) for k in config.sweep.label_counts for s in config.sweep.seeds]


def run_dir(workdir: str, run: RunSpec) -> str:
    return os.path.join(workdir, "runs", run.name)


def is_finished(workdir: str, config, run: RunSpec) -> bool:
    """True when the run's folder holds results of exactly this run's config."""
    folder = run_dir(workdir, run)
    if not os.path.exists(os.path.join(folder, "results.json")):
        return False
    claim_workdir(folder, run_config(config, run))  # raises if another config owns it
    return True


def run_sweep(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs every (k, seed) of `config.sweep` not yet finished, then summarises all."""
    runs = sweep_runs(config)
    config_lib.validate(config, label_counts=config.sweep.label_counts)
    os.makedirs(workdir, exist_ok=True)
    io.write_json(os.path.join(workdir, "sweep_config.json"), config_lib.to_dict(config))
    dataset = load_data(config)
    capacity = common_capacity(config, dataset, runs)
    todo = [r for r in runs if not is_finished(workdir, config, r)]
    logging.info(
        "sweep: %d runs, %d finished, capacity %d", len(runs), len(runs) - len(todo), capacity
    )
    if todo and config.sweep.batched:
        size = config.sweep.runs_per_batch or len(todo)
        engines: dict[int, Engine] = {}
        for start in range(0, len(todo), size):
            batch = todo[start : start + size]
            engine = engines.setdefault(len(batch), Engine(config, dataset, len(batch)))
            tag = hashlib.sha256(" ".join(r.name for r in batch).encode()).hexdigest()[:10]
            run_batch(
                config,
                dataset,
                batch,
                [run_dir(workdir, r) for r in batch],
                engine=engine,
                capacity=capacity,
                progress=progress,
                checkpoint_dir=os.path.join(workdir, "batches", tag, "checkpoints"),
            )
    elif todo:
        engine = Engine(config, dataset, 1)
        for run in todo:
            folder = run_dir(workdir, run)
            run_batch(
                config,
                dataset,
                [run],
                [folder],
                engine=engine,
                capacity=capacity,
                checkpoint_dir=os.path.join(folder, "checkpoints"),
                progress=progress,
            )
    results = {r: io.read_json(os.path.join(run_dir(workdir, r), "results.json")) for r in runs}
    return summarize(config, workdir, runs, results)


def summarize(config, workdir: str, runs: Sequence[RunSpec], results: dict) -> dict[str, Any]:
    """Writes summary.csv / summary.md and the sweep figures; returns the summary rows."""
    ks = sorted({r.victim_num_labels for r in runs})
    attacks = list(config.attack.attacks)
    protocols = list(config.attack.protocols)
    rows = []
    for attack in attacks:
        for protocol in protocols:
            for k in ks:
                per_seed = [
                    results[r]["attacks"].get(attack) for r in runs if r.victim_num_labels == k
                ]
                per_seed = [m[protocol] for m in per_seed if m]
                row = {"attack": attack, "protocol": protocol, "k": k, "seeds": len(per_seed)}
                for name in SUMMARY_METRICS:
                    values = np.array(
                        [m[name] for m in per_seed if m.get(name) is not None], np.float64
                    )
                    row[f"{name}_mean"] = values.mean() if len(values) else None
                    row[f"{name}_std"] = values.std(ddof=1) if len(values) > 1 else None
                rows.append(row)
    accuracy_rows = []
    for k in ks:
        mine = [results[r] for r in runs if r.victim_num_labels == k]
        row = {"k": k, "seeds": len(mine)}
        for key in (
            "final_main_task_accuracy",
            "global_model_accuracy",
            "attack_model_accuracy",
            "oracle_model_accuracy",
        ):
            values = np.array([m[key] for m in mine if m.get(key) is not None], np.float64)
            row[f"{key}_mean"] = values.mean() if len(values) else None
            row[f"{key}_std"] = values.std(ddof=1) if len(values) > 1 else None
        accuracy_rows.append(row)
    header = list(rows[0])
    io.write_csv(os.path.join(workdir, "summary.csv"), header, [list(r.values()) for r in rows])
    io.write_text(os.path.join(workdir, "summary.md"), _markdown(rows, accuracy_rows))
    _figures(workdir, runs, results, attacks, protocols, ks)
    return {"rows": rows, "accuracy": accuracy_rows}


def _fmt(mean, std, digits=3) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _markdown(rows, accuracy_rows) -> str:
    lines = [
        "| attack | protocol | k | seeds | TPR (paper's accuracy) | FPR | AUC | "
        "TPR@1%FPR | TPR@0.1%FPR | balanced acc. | TP | FN | FP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            _fmt(r[f"{m}_mean"], r[f"{m}_std"])
            for m in (
                "tpr",
                "fpr",
                "auc",
                "tpr_at_1pct_fpr",
                "tpr_at_0.1pct_fpr",
                "balanced_accuracy",
            )
        ]
        cells += [_fmt(r[f"{m}_mean"], r[f"{m}_std"], 1) for m in ("tp", "fn", "fp")]
        lines.append(
            f"| {r['attack']} | {r['protocol']} | {r['k']} | {r['seeds']} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "| k | seeds | main-task acc. | attack classifier acc. (gan) | oracle acc. |",
        "|---|---|---|---|---|",
    ]
    for r in accuracy_rows:
        lines.append(
            f"| {r['k']} | {r['seeds']} | "
            f"{_fmt(r['final_main_task_accuracy_mean'], r['final_main_task_accuracy_std'])} | "
            f"{_fmt(r['attack_model_accuracy_mean'], r['attack_model_accuracy_std'])} | "
            f"{_fmt(r['oracle_model_accuracy_mean'], r['oracle_model_accuracy_std'])} |"
        )
    return "\n".join(lines) + "\n"


def _figures(workdir, runs, results, attacks, protocols, ks) -> None:
    plots.tp_fn_by_k(
        os.path.join(workdir, "tp_fn_by_k.png"),
        {
            a: {
                p: {
                    k: [
                        results[r]["attacks"][a][p]
                        for r in runs
                        if r.victim_num_labels == k and results[r]["attacks"].get(a)
                    ]
                    for k in ks
                }
                for p in protocols
            }
            for a in attacks
        },
    )
    curves = {}
    for protocol in protocols:
        curves[protocol] = {}
        for attack in attacks:
            curves[protocol][attack] = {}
            for k in ks:
                truth, scores = [], []
                for r in runs:
                    if r.victim_num_labels != k or not results[r]["attacks"].get(attack):
                        continue
                    npz = np.load(os.path.join(run_dir(workdir, r), "membership.npz"))
                    truth.append(npz[f"is_member__{protocol}"])
                    scores.append(npz[f"score__{attack}__{protocol}"])
                if truth:  # seeds pooled into one ROC per k
                    curves[protocol][attack][k] = (np.concatenate(truth), np.concatenate(scores))
    plots.roc_by_k(os.path.join(workdir, "roc_by_k.png"), curves)
    plots.accuracy_curve(
        os.path.join(workdir, "accuracy_by_run.png"),
        {r.name: np.asarray(results[r]["main_task_accuracy"]) for r in runs},
        title="Main-task accuracy per run",
    )
