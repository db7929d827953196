"""Membership within the victim's classes, recomputed from a sweep's membership.npz files.

    python experiments/membership_report.py --workdir=runs/membership   # a sweep
    python experiments/membership_report.py --workdir=runs/frontier     # one run
    python experiments/membership_report.py --workdir=runs/f_seed0,runs/f_seed1,runs/f_seed2 \
        --protocols=within,strict,paper                                 # runs, grouped

``--workdir`` takes one or more folders, each a sweep (its ``runs/*``) or one run; runs
are grouped by setting, the folder's name without its ``_seed<n>`` suffix, so separate
runs of one config over seeds form one row. ``--protocols`` adds the strict and paper
protocols' own tables, recomputed from the same scores (``within`` is the default).

The strict protocol's non-members are the other participants' records *and* held-out
records of the victim's classes; a label rule already ranks the former low. This table
keeps only the latter (needs both protocols): the victim's records against
unseen records of its own classes, where only membership can tell them apart. Per
setting (every axis but the seed): AUC, TPR at 1% and 0.1% FPR, mean ± the half-width of
the 95% t-interval over seeds (`fedgan_jax.evaluation.intervals`).
"""

import glob
import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedgan_jax.evaluation import (
    intervals,
    metrics,  # noqa: E402
)

_WORKDIR = flags.DEFINE_list("workdir", None, "Folders: sweeps or single runs.")
PROTOCOLS = ("within", "strict", "paper")
_PROTOCOLS = flags.DEFINE_list("protocols", ["within"], f"Tables to print, of {PROTOCOLS}.")
flags.mark_flags_as_required(["workdir"])


def within_class(run_dir: str, protocol: str = "within") -> dict[str, tuple[float, float, float]]:
    """attack -> (AUC, TPR@1%FPR, TPR@0.1%FPR): members against same-class held-out records
    (``within``), or on a protocol's whole target set (``strict``, ``paper``)."""
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


def run_dirs(workdirs: list[str]) -> list[str]:
    """Every finished run under the folders: a folder holding membership.npz is one run,
    any other one a sweep whose runs are ``runs/*``."""
    found = []
    for workdir in workdirs:
        if not os.path.isdir(workdir):
            raise FileNotFoundError(f"--workdir {workdir}: no such folder")
        single = os.path.exists(os.path.join(workdir, "membership.npz"))
        found += [workdir] if single else sorted(glob.glob(os.path.join(workdir, "runs", "*")))
    done = [d for d in found if os.path.exists(os.path.join(d, "results.json"))]
    if not done:
        raise FileNotFoundError(f"no finished run (results.json) under {workdirs}")
    return done


def table(found: list[str], protocol: str) -> list[str]:
    """Markdown lines: per setting and attack, mean ± the 95% t half-width over its runs."""
    groups: dict[str, list[dict]] = {}
    for run_dir in found:
        setting = os.path.basename(os.path.normpath(run_dir)).rsplit("_seed", 1)[0]
        groups.setdefault(setting, []).append(within_class(run_dir, protocol))
    lines = [
        "| setting | attack | seeds | AUC | TPR@1%FPR | TPR@0.1%FPR |",
        "|---|---|---|---|---|---|",
    ]
    for setting, runs in groups.items():
        for attack in runs[0]:
            v = np.array([r[attack] for r in runs if attack in r])
            cells = [_cell(*intervals.mean_std_ci95(column)) for column in v.T]
            lines.append(f"| {setting} | {attack} | {len(v)} | " + " | ".join(cells) + " |")
    return lines


def main(argv):
    del argv
    unknown = sorted(set(_PROTOCOLS.value) - set(PROTOCOLS))
    if unknown:
        raise app.UsageError(f"--protocols: {unknown} unknown; expected some of {PROTOCOLS}")
    found = run_dirs(_WORKDIR.value)
    for protocol in _PROTOCOLS.value:
        print(f"\n{protocol}\n" if len(_PROTOCOLS.value) > 1 else "", end="")
        print("\n".join(table(found, protocol)))
    print(f"\n{intervals.NOTE}")


def _cell(mean: float, std: float | None, half: float | None) -> str:
    del std  # the table shows the interval; one seed has neither
    return f"{mean:.3f}" + (f" ± {half:.3f}" if half is not None else "")


if __name__ == "__main__":
    app.run(main)
