"""A finished sweep's summary: tables over seeds and figures, for any set of axes.

Rows group the runs by their *setting* (every axis value but the seed): every setting x
attack x protocol with, per metric, the mean, standard deviation and 95% t-interval
half-width over seeds (``<metric>_mean``, ``_std``, ``_ci95`` in ``summary.csv``;
mean ± half-width in ``summary.md``, see `fedgan_jax.evaluation.intervals`), and every setting's
accuracies (``accuracy.csv``). `rerender` rewrites them from the CSVs alone. Figures: TP/FN and ROC
by k for each setting of the other axes, D_gen per generator mode when ``gan.mode`` is an
axis, and the main-task accuracy of every run.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedgan_jax.core import io
from fedgan_jax.driver.engine import RunSpec
from fedgan_jax.driver.outputs import per_class_grid
from fedgan_jax.evaluation import intervals, plots

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
ACCURACY_FIELDS = (
    "final_main_task_accuracy",
    "global_model_accuracy",
    "attack_model_accuracy",
    "oracle_model_accuracy",
    "wall_seconds",
)
COLUMN = {"fl.victim_num_labels": "k", "gan.mode": "gan_mode"}  # short column names


def setting(run: RunSpec) -> tuple:
    """The run's axis values but the seed (what its seeds are averaged over)."""
    return tuple((f, v) for f, v in run.overrides if f != "seed")


def columns(run: RunSpec) -> dict[str, Any]:
    return {COLUMN.get(f, f): v for f, v in setting(run)}


STATS = ("_mean", "_std", "_ci95")  # the columns of one metric over seeds


def _put(row: dict, name: str, values) -> None:
    """row[name_mean], row[name_std], row[name_ci95] over the values that are not None."""
    for suffix, value in zip(STATS, intervals.mean_std_ci95(values), strict=True):
        row[name + suffix] = value


def _groups(runs: Sequence[RunSpec]) -> dict[tuple, list[RunSpec]]:
    groups: dict[tuple, list[RunSpec]] = {}
    for r in runs:
        groups.setdefault(setting(r), []).append(r)
    return groups


def _attack_rows(config, groups, results) -> list[dict]:
    rows = []
    for attack in config.attack.attacks:
        for protocol in config.attack.protocols:
            for mine in groups.values():
                per_seed = [
                    results[r]["attacks"][attack][protocol]
                    for r in mine
                    if results[r]["attacks"].get(attack)
                ]
                row = {
                    "attack": attack,
                    "protocol": protocol,
                    **columns(mine[0]),
                    "seeds": len(per_seed),
                }
                for name in SUMMARY_METRICS:
                    _put(row, name, (m.get(name) for m in per_seed))
                rows.append(row)
    return rows


def _accuracy_rows(groups, results) -> list[dict]:
    rows = []
    for mine in groups.values():
        found = [results[r] for r in mine]
        objectives = sorted({m.get("gan_objective") or "?" for m in found})
        row = {**columns(mine[0]), "gan_objective": "/".join(objectives), "seeds": len(found)}
        for key in ACCURACY_FIELDS:
            _put(row, key, (m.get(key) for m in found))
        d_gen = [m.get("d_gen") or {} for m in found]
        _put(row, "d_gen_diversity", (d.get("diversity") for d in d_gen))
        row["real_diversity"] = intervals.mean_std_ci95(d.get("real_diversity") for d in d_gen)[0]
        rows.append(row)
    return rows


def summarize(
    config,
    workdir: str,
    runs: Sequence[RunSpec],
    results: dict,
    run_dir: Callable[[str, RunSpec], str],
) -> dict[str, Any]:
    """Writes summary.csv / summary.md / accuracy.csv and the figures; returns the rows."""
    groups = _groups(runs)
    tables = {
        "rows": _attack_rows(config, groups, results),
        "accuracy": _accuracy_rows(groups, results),
        "upload_cost": upload_cost_rows(groups, results),
    }
    _write_tables(workdir, tables)
    _figures(config, workdir, runs, results, run_dir)
    return tables


CSV = {"rows": "summary.csv", "accuracy": "accuracy.csv", "upload_cost": "upload_cost.csv"}


def _write_tables(workdir: str, tables: dict[str, list[dict]]) -> None:
    """Each non-empty table as its CSV, and all of them as summary.md."""
    for key, table in tables.items():
        if table:
            path = os.path.join(workdir, CSV[key])
            io.write_csv(path, list(table[0]), [list(r.values()) for r in table])
    cost = tables["upload_cost"]
    text = markdown(tables["rows"], tables["accuracy"]) + (upload_markdown(cost) if cost else "")
    io.write_text(os.path.join(workdir, "summary.md"), text)


def rerender(workdir: str) -> dict[str, list[dict]]:
    """Rewrites a finished sweep's summary.md, and its CSVs with ``_ci95`` columns, from
    summary.csv, accuracy.csv and upload_cost.csv alone (whichever it kept; no runs).

    A missing ``<metric>_ci95`` is computed from ``<metric>_std`` and the ``seeds``
    column, so it assumes every seed gave that metric (true of the attack rows, whose
    ``seeds`` counts the runs the attack ran in). Present ``_ci95`` columns are kept."""
    tables = {key: [] for key in CSV}
    for key, name in CSV.items():
        path = os.path.join(workdir, name)
        if os.path.isfile(path):
            with open(path, newline="") as f:
                tables[key] = [_with_ci95(r) for r in csv.DictReader(f)]
    if not tables["rows"]:
        raise FileNotFoundError(f"{os.path.join(workdir, CSV['rows'])}: no summary rows")
    _write_tables(workdir, tables)
    return tables


def _with_ci95(raw: dict[str, str]) -> dict[str, Any]:
    """A CSV row with numbers parsed and ``_ci95`` inserted after each ``_std``."""
    row: dict[str, Any] = {}
    for key, value in raw.items():
        numeric = key.endswith(STATS) or key == "real_diversity"
        row[key] = (float(value) if value != "" else None) if numeric else value
        if key == "seeds":
            row[key] = int(value)
        name = key.removesuffix("_std")
        if key.endswith("_std") and f"{name}_ci95" not in raw:
            row[f"{name}_ci95"] = intervals.ci95_half_width(row[key], int(raw["seeds"]))
    return row


UPLOAD = "adversary.upload"
COST_FIELDS = ("accuracy_at", "accuracy_next", "final_accuracy")


def _honest_twin(run: RunSpec) -> RunSpec:
    return RunSpec(tuple((f, "honest" if f == UPLOAD else v) for f, v in run.overrides))


def upload_cost_rows(groups: dict, results: dict) -> list[dict]:
    """Per malicious-upload setting: main-task accuracy in the round of its (first)
    malicious upload, the round after and at the end, and each minus the honest run of
    the same seed and other axes (mean, std and 95% t half-width over seeds). Empty
    without the axis."""
    rows = []
    for mine in groups.values():
        if mine[0].get(UPLOAD) in (None, "honest"):
            continue
        row = {**columns(mine[0]), "seeds": len(mine)}
        for field in COST_FIELDS:
            values, deltas = [], []
            for r in mine:
                twin = results.get(_honest_twin(r))
                mine_v, twin_v = _first(results[r]["upload"], field), None
                if twin is not None and results[r]["upload"]["rounds"]:
                    twin_v = _accuracy_in(twin, results[r]["upload"], field)
                values.append(mine_v)
                deltas.append(None if mine_v is None or twin_v is None else mine_v - twin_v)
            _put(row, field, values)
            _put(row, f"{field}_delta", deltas)
        rows.append(row)
    return rows


def _first(upload: dict, field: str):
    value = upload.get(field)
    return (value[0] if value else None) if isinstance(value, list) else value


def _accuracy_in(honest: dict, upload: dict, field: str):
    """The honest run's accuracy in the same round as the malicious run's `field`."""
    acc = honest["main_task_accuracy"]
    t = {"accuracy_at": upload["rounds"][0], "accuracy_next": upload["rounds"][0] + 1}.get(
        field, len(acc)
    )
    return acc[t - 1] if t <= len(acc) else None


def upload_markdown(rows: list[dict]) -> str:
    names = [k for k in rows[0] if k != "seeds" and not k.endswith(STATS)]
    head = [*names, "seeds", "acc. in upload round (vs honest)", "next round", "final"]
    lines = ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [*(str(r[n]) for n in names), str(r["seeds"])]
        for f in COST_FIELDS:
            cells.append(f"{_fmt(r, f)} ({_fmt(r, f + '_delta')})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", intervals.NOTE]) + "\n"


def _fmt(row: dict, name: str, digits=3) -> str:
    """`name`'s mean ± 95% t half-width over seeds; the mean alone for one seed."""
    return intervals.cell(row[f"{name}_mean"], row[f"{name}_ci95"], digits)


def _setting_names(row: dict) -> list[str]:
    fixed = {"attack", "protocol", "seeds", "real_diversity", "gan_objective"}
    return [k for k in row if k not in fixed and not k.endswith(STATS)]


def markdown(rows: list[dict], accuracy_rows: list[dict]) -> str:
    """The attack table, then (when given) the accuracy table, each with the ± note."""
    text = _attack_markdown(rows)
    return text + ("\n" + _accuracy_markdown(accuracy_rows) if accuracy_rows else "")


def _attack_markdown(rows: list[dict]) -> str:
    names = _setting_names(rows[0])
    metrics = ("tpr", "fpr", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "balanced_accuracy")
    head = [
        "attack",
        "protocol",
        *names,
        "seeds",
        "TPR (paper's accuracy)",
        "FPR",
        "AUC",
        "TPR@1%FPR",
        "TPR@0.1%FPR",
        "balanced acc.",
        "TP",
        "FN",
        "FP",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["attack"], r["protocol"], *(str(r[n]) for n in names), str(r["seeds"])]
        cells += [_fmt(r, m) for m in metrics]
        cells += [_fmt(r, m, 1) for m in ("tp", "fn", "fp")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", intervals.NOTE]) + "\n"


def _accuracy_markdown(accuracy_rows: list[dict]) -> str:
    names = _setting_names(accuracy_rows[0])
    head = [
        *names,
        "seeds",
        "main-task acc.",
        "attack classifier acc. (gan)",
        "ratio to global",
        "oracle acc.",
        "D_gen diversity (real)",
        "wall s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in accuracy_rows:
        attack_acc, global_acc = r["attack_model_accuracy_mean"], r["global_model_accuracy_mean"]
        ratio = f"{attack_acc / global_acc:.3f}" if attack_acc and global_acc else "n/a"
        real = f"{r['real_diversity']:.2f}" if r["real_diversity"] is not None else "n/a"
        cells = [
            *(str(r[n]) for n in names),
            str(r["seeds"]),
            _fmt(r, "final_main_task_accuracy"),
            _fmt(r, "attack_model_accuracy"),
            ratio,
            _fmt(r, "oracle_model_accuracy"),
            f"{_fmt(r, 'd_gen_diversity', 2)} ({real})",
            _fmt(r, "wall_seconds", 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", intervals.NOTE]) + "\n"


def _figures(config, workdir, runs, results, run_dir) -> None:
    _modes_figure(config, workdir, runs, results, run_dir)
    others: dict[tuple, list[RunSpec]] = {}  # by-k figures per setting of the other axes
    for r in runs:
        key = tuple((f, v) for f, v in setting(r) if f != "fl.victim_num_labels")
        others.setdefault(key, []).append(r)
    for key, mine in others.items():
        suffix = (
            "".join(f"__{v}" if f == "gan.mode" else f"__{f.split('.')[-1]}={v}" for f, v in key)
            if len(others) > 1
            else ""
        )
        _by_k_figures(config, workdir, suffix, mine, results, run_dir)
    plots.accuracy_curve(
        os.path.join(workdir, "accuracy_by_run.png"),
        {r.name: np.asarray(results[r]["main_task_accuracy"]) for r in runs},
        title="Main-task accuracy per run",
    )


def _modes_figure(config, workdir, runs, results, run_dir) -> None:
    """One grid of D_gen per generator mode (its first run) beside real records."""
    modes = list(dict.fromkeys(r.get("gan.mode") for r in runs if r.get("gan.mode")))
    if len(modes) < 2:
        return
    panels = []
    for mode in modes:
        first = next(r for r in runs if r.get("gan.mode") == mode)
        path = os.path.join(run_dir(workdir, first), "samples.npz")
        if os.path.exists(path):
            acc = results[first].get("attack_model_accuracy")
            panels.append(
                (
                    mode + (f" (attack acc. {acc:.2f})" if acc is not None else ""),
                    np.load(path)["d_gen"],
                )
            )
    if panels:
        from fedgan_jax.driver.experiment import load_data

        ds = load_data(config)
        grid = panels[0][1]
        real = per_class_grid(ds.test_x, ds.test_y, grid.shape[0], grid.shape[1])
        plots.reconstructions(
            os.path.join(workdir, "modes.png"),
            [*panels, ("real", real)],
            title="D_gen per generator mode",
        )


def _by_k_figures(config, workdir, suffix, runs, results, run_dir) -> None:
    ks = sorted({r.get("fl.victim_num_labels") for r in runs})
    attacks, protocols = config.attack.attacks, config.attack.protocols

    def done(r, a):
        return results[r]["attacks"].get(a)

    plots.tp_fn_by_k(
        os.path.join(workdir, f"tp_fn_by_k{suffix}.png"),
        {
            a: {
                p: {
                    k: [
                        results[r]["attacks"][a][p]
                        for r in runs
                        if r.get("fl.victim_num_labels") == k and done(r, a)
                    ]
                    for k in ks
                }
                for p in protocols
            }
            for a in attacks
        },
    )
    curves = {p: {a: {} for a in attacks} for p in protocols}
    for protocol in protocols:
        for attack in attacks:
            for k in ks:
                mine = [r for r in runs if r.get("fl.victim_num_labels") == k and done(r, attack)]
                npz = [np.load(os.path.join(run_dir(workdir, r), "membership.npz")) for r in mine]
                if npz:  # seeds pooled into one ROC per k
                    curves[protocol][attack][k] = (
                        np.concatenate([z[f"is_member__{protocol}"] for z in npz]),
                        np.concatenate([z[f"score__{attack}__{protocol}"] for z in npz]),
                    )
    plots.roc_by_k(os.path.join(workdir, f"roc_by_k{suffix}.png"), curves)
