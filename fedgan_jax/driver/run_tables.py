"""Tables over finished runs' folders, read back from what `driver.outputs` wrote.

* `run_dirs`: every finished run under some folders (single runs or sweeps).
* `setting_of`: a run folder's setting, its name without the seed (``k2_seed0`` -> ``k2``).
* `membership_scores` / `membership_table`: each attack's AUC and TPR at 1% and 0.1% FPR,
  recomputed from ``membership.npz`` under a protocol, and the markdown table over seeds.
* `privacy_rows`: a DP sweep's epsilon, accuracy and each attack's TPR at 1% FPR per
  setting, over seeds (`fedgan_jax.evaluation.plots.privacy_utility_attack` draws them).

The launchers `experiments/membership_report.py` and `experiments/privacy_figure.py` only
parse flags and print; the logic lives here so that it imports without absl flags.
"""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

from fedgan_jax.evaluation import intervals, metrics

PROTOCOLS = ("within", "strict", "paper")
_SEED = re.compile(r"seed\d+")


def setting_of(run_dir: str) -> str:
    """The run folder's name without its seed part: the inverse of ``RunSpec.name`` on the
    seed axis (``noise_multiplier=0.5_seed1_k2`` -> ``noise_multiplier=0.5_k2``), and of
    a single run named ``<config>_seed<n>``."""
    name = os.path.basename(os.path.normpath(run_dir))
    return "_".join(p for p in name.split("_") if not _SEED.fullmatch(p)) or name


def run_dirs(workdirs: list[str]) -> list[str]:
    """Every finished run under the folders: a folder holding membership.npz or
    results.json is one run, any other one a sweep whose runs are ``runs/*``."""
    found = []
    for workdir in workdirs:
        if not os.path.isdir(workdir):
            raise FileNotFoundError(f"--workdir {workdir}: no such folder")
        single = any(
            os.path.exists(os.path.join(workdir, f)) for f in ("membership.npz", "results.json")
        )
        found += [workdir] if single else sorted(glob.glob(os.path.join(workdir, "runs", "*")))
    done = [d for d in found if os.path.exists(os.path.join(d, "results.json"))]
    if not done:
        raise FileNotFoundError(f"no finished run (results.json) under {workdirs}")
    return done


def membership_scores(
    run_dir: str, protocol: str = "within"
) -> dict[str, tuple[float, float, float]]:
    """attack -> (AUC, TPR@1%FPR, TPR@0.1%FPR): members against same-class held-out records
    (``within``), or on a protocol's whole target set (``strict``, ``paper``).

    The strict protocol's non-members are the other participants' records *and* held-out
    records of the victim's classes; ``within`` keeps only the latter, where only
    membership (not the label) can tell a record from a member."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: expected one of {PROTOCOLS}")
    z = np.load(os.path.join(run_dir, "membership.npz"))
    suffix = "paper" if protocol == "paper" else "strict"
    member = z[f"is_member__{suffix}"]
    keep = np.ones(len(member), bool)
    if protocol == "within":
        # strict = the paper's set, then the held-out records (protocols.target_sets)
        keep = member | (np.arange(len(member)) >= len(z["index__paper"]))
    out = {}
    for key in z.files:
        if key.startswith("score__") and key.endswith(f"__{suffix}"):
            attack = key.split("__")[1]
            fpr, tpr, _ = metrics.roc_curve(member[keep], z[key][keep])
            out[attack] = (
                metrics.auc(fpr, tpr),
                metrics.tpr_at_fpr(fpr, tpr, 0.01),
                metrics.tpr_at_fpr(fpr, tpr, 0.001),
            )
    return out


def membership_table(found: list[str], protocol: str) -> list[str]:
    """Markdown lines: per setting and attack, mean ± the 95% t half-width over its runs."""
    groups: dict[str, list[dict]] = {}
    for run_dir in found:
        groups.setdefault(setting_of(run_dir), []).append(membership_scores(run_dir, protocol))
    lines = [
        "| setting | attack | seeds | AUC | TPR@1%FPR | TPR@0.1%FPR |",
        "|---|---|---|---|---|---|",
    ]
    for setting, runs in groups.items():
        for attack in runs[0]:
            v = np.array([r[attack] for r in runs if attack in r])
            cells = []
            for column in v.T:
                mean, _, half = intervals.mean_std_ci95(column)
                cells.append(intervals.cell(mean, half))
            lines.append(f"| {setting} | {attack} | {len(v)} | " + " | ".join(cells) + " |")
    return lines


def privacy_rows(found: list[str], protocol: str) -> list[dict]:
    """One row per setting: epsilon, delta, accuracy and each attack's TPR@1%FPR, as
    (mean, std, 95% t half-width) over its seeds (std and half-width None for one seed).
    Sorted by epsilon; settings without a finite epsilon (no noise) come last."""
    groups: dict[str, list[dict]] = {}
    for run_dir in found:
        with open(os.path.join(run_dir, "results.json")) as f:
            groups.setdefault(setting_of(run_dir), []).append(json.load(f))
    rows = []
    for name, results in groups.items():
        eps = [r["privacy"]["epsilon"] for r in results]
        row = {
            "setting": name,
            "seeds": len(results),
            "epsilon": None if None in eps else float(np.mean(eps)),
            "delta": results[0]["privacy"]["delta"],
            "accuracy": intervals.mean_std_ci95(r["final_main_task_accuracy"] for r in results),
        }
        for attack in results[0]["attacks"]:
            values = [
                r["attacks"][attack][protocol]["tpr_at_1pct_fpr"]
                for r in results
                if r["attacks"].get(attack)
            ]
            if values:
                row[attack] = intervals.mean_std_ci95(values)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["epsilon"] is None, r["epsilon"] or 0.0))
