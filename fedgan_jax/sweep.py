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
from fedgan_jax.checkpointing import RESUMABLE_FIELDS, claim_workdir
from fedgan_jax.engine import Engine, RunSpec, common_capacity
from fedgan_jax.experiment import load_data, run_batch, run_config, with_gan_mode

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
    modes = tuple(config.sweep.gan_modes) or (None,)
    return [
        RunSpec(int(s), int(k), mode)
        for mode in modes
        for k in config.sweep.label_counts
        for s in config.sweep.seeds
    ]


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
    pending = [r for r in runs if not is_finished(workdir, config, r)]
    logging.info(
        "sweep: %d runs, %d finished, capacity %d", len(runs), len(runs) - len(pending), capacity
    )
    for mode in dict.fromkeys(r.gan_mode for r in pending):  # one engine per generator mode
        mode_config = with_gan_mode(config, mode)
        _run_mode(
            mode_config,
            dataset,
            [r for r in pending if r.gan_mode == mode],
            workdir,
            capacity,
            progress,
        )
    results = {r: io.read_json(os.path.join(run_dir(workdir, r), "results.json")) for r in runs}
    return summarize(config, workdir, runs, results)


def _run_mode(config, dataset, pending, workdir, capacity, progress) -> None:
    if config.sweep.batched:
        size = config.sweep.runs_per_batch or len(pending)
        engines: dict[int, Engine] = {}
        for start in range(0, len(pending), size):
            batch = pending[start : start + size]
            if len(batch) not in engines:
                engines[len(batch)] = Engine(config, dataset, len(batch))
            # The batch's checkpoints are keyed by its runs and the config: a changed config
            # never resumes another one's state.
            ident = " ".join(r.name for r in batch) + config_lib.fingerprint(
                config, RESUMABLE_FIELDS
            )
            tag = hashlib.sha256(ident.encode()).hexdigest()[:10]
            run_batch(
                config,
                dataset,
                batch,
                [run_dir(workdir, r) for r in batch],
                engine=engines[len(batch)],
                capacity=capacity,
                progress=progress,
                checkpoint_dir=os.path.join(workdir, "batches", tag, "checkpoints"),
            )
    else:
        engine = Engine(config, dataset, 1)
        for run in pending:
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


def _mean_std(values) -> tuple[float | None, float | None]:
    v = np.array([x for x in values if x is not None], np.float64)
    return (v.mean() if len(v) else None), (v.std(ddof=1) if len(v) > 1 else None)


def summarize(config, workdir: str, runs: Sequence[RunSpec], results: dict) -> dict[str, Any]:
    """Writes summary.csv / summary.md and the sweep figures; returns the summary rows.

    Rows: every (generator mode, attack, protocol, k) with mean and standard deviation over
    the seeds; `accuracy` rows: every (mode, k) with the main-task, attack-classifier and
    oracle accuracies, D_gen's diversity and the wall time.
    """
    ks = sorted({r.victim_num_labels for r in runs})
    modes = list(dict.fromkeys(r.gan_mode or config.gan.mode for r in runs))
    attacks = list(config.attack.attacks)
    protocols = list(config.attack.protocols)

    def group(mode, k):
        return [
            results[r]
            for r in runs
            if (r.gan_mode or config.gan.mode) == mode and r.victim_num_labels == k
        ]

    rows, accuracy_rows = [], []
    for mode in modes:
        for attack in attacks:
            for protocol in protocols:
                for k in ks:
                    per_seed = [
                        m["attacks"][attack][protocol]
                        for m in group(mode, k)
                        if m["attacks"].get(attack)
                    ]
                    row = {
                        "gan_mode": mode,
                        "attack": attack,
                        "protocol": protocol,
                        "k": k,
                        "seeds": len(per_seed),
                    }
                    for name in SUMMARY_METRICS:
                        row[f"{name}_mean"], row[f"{name}_std"] = _mean_std(
                            m.get(name) for m in per_seed
                        )
                    rows.append(row)
        for k in ks:
            mine = group(mode, k)
            row = {"gan_mode": mode, "k": k, "seeds": len(mine)}
            for key in ACCURACY_FIELDS:
                row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(m.get(key) for m in mine)
            row["d_gen_diversity_mean"], row["d_gen_diversity_std"] = _mean_std(
                (m.get("d_gen") or {}).get("diversity") for m in mine
            )
            row["real_diversity"] = _mean_std(
                (m.get("d_gen") or {}).get("real_diversity") for m in mine
            )[0]
            row["wall_seconds_mean"], row["wall_seconds_std"] = _mean_std(
                m.get("wall_seconds") for m in mine
            )
            accuracy_rows.append(row)
    io.write_csv(
        os.path.join(workdir, "summary.csv"), list(rows[0]), [list(r.values()) for r in rows]
    )
    io.write_csv(
        os.path.join(workdir, "accuracy.csv"),
        list(accuracy_rows[0]),
        [list(r.values()) for r in accuracy_rows],
    )
    io.write_text(os.path.join(workdir, "summary.md"), _markdown(rows, accuracy_rows))
    _figures(config, workdir, runs, results, attacks, protocols, ks, modes)
    return {"rows": rows, "accuracy": accuracy_rows}


ACCURACY_FIELDS = (
    "final_main_task_accuracy",
    "global_model_accuracy",
    "attack_model_accuracy",
    "oracle_model_accuracy",
)


def _fmt(mean, std, digits=3) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _markdown(rows, accuracy_rows) -> str:
    lines = [
        "| gan mode | attack | protocol | k | seeds | TPR (paper's accuracy) | FPR | AUC | "
        "TPR@1%FPR | TPR@0.1%FPR | balanced acc. | TP | FN | FP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
            f"| {r['gan_mode']} | {r['attack']} | {r['protocol']} | {r['k']} | "
            f"{r['seeds']} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "| gan mode | k | seeds | main-task acc. | attack classifier acc. (gan) | "
        "ratio to global | oracle acc. | D_gen diversity (real) | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in accuracy_rows:
        attack_acc, global_acc = r["attack_model_accuracy_mean"], r["global_model_accuracy_mean"]
        ratio = f"{attack_acc / global_acc:.3f}" if attack_acc and global_acc else "n/a"
        real = f"{r['real_diversity']:.2f}" if r["real_diversity"] is not None else "n/a"
        lines.append(
            f"| {r['gan_mode']} | {r['k']} | {r['seeds']} | "
            f"{_fmt(r['final_main_task_accuracy_mean'], r['final_main_task_accuracy_std'])} | "
            f"{_fmt(attack_acc, r['attack_model_accuracy_std'])} | {ratio} | "
            f"{_fmt(r['oracle_model_accuracy_mean'], r['oracle_model_accuracy_std'])} | "
            f"{_fmt(r['d_gen_diversity_mean'], r['d_gen_diversity_std'], 2)} ({real}) | "
            f"{_fmt(r['wall_seconds_mean'], r['wall_seconds_std'], 0)} |"
        )
    return "\n".join(lines) + "\n"


def _figures(config, workdir, runs, results, attacks, protocols, ks, modes) -> None:
    if len(modes) > 1:  # one grid of D_gen per mode (first k, first seed) beside real ones
        panels = []
        for mode in modes:
            first = next(r for r in runs if (r.gan_mode or config.gan.mode) == mode)
            path = os.path.join(run_dir(workdir, first), "samples.npz")
            if os.path.exists(path):
                acc = results[first].get("attack_model_accuracy")
                caption = f"{mode}" + (f" (attack acc. {acc:.2f})" if acc is not None else "")
                panels.append((caption, np.load(path)["d_gen"]))
        if panels:
            ds = load_data(config)
            per_class = panels[0][1].shape[1]
            real = np.full_like(panels[0][1], -1.0)
            for c in range(real.shape[0]):
                idx = np.flatnonzero(ds.test_y == c)[:per_class]
                real[c, : len(idx)] = ds.test_x[idx]
            plots.reconstructions(
                os.path.join(workdir, "modes.png"),
                [*panels, ("real", real)],
                title="D_gen per generator mode",
            )
    for mode in modes:  # by-k figures per generator mode (suffixed when several)
        mine = [r for r in runs if (r.gan_mode or config.gan.mode) == mode]
        suffix = f"__{mode}" if len(modes) > 1 else ""
        _by_k_figures(workdir, suffix, mine, results, attacks, protocols, ks)
    plots.accuracy_curve(
        os.path.join(workdir, "accuracy_by_run.png"),
        {r.name: np.asarray(results[r]["main_task_accuracy"]) for r in runs},
        title="Main-task accuracy per run",
    )


def _by_k_figures(workdir, suffix, runs, results, attacks, protocols, ks) -> None:
    plots.tp_fn_by_k(
        os.path.join(workdir, f"tp_fn_by_k{suffix}.png"),
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
    plots.roc_by_k(os.path.join(workdir, f"roc_by_k{suffix}.png"), curves)
