"""Membership within the victim's classes, recomputed from a sweep's membership.npz files.

    python experiments/membership_report.py --workdir=runs/membership   # a sweep
    python experiments/membership_report.py --workdir=runs/frontier     # one run

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

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the sweep.")
flags.mark_flags_as_required(["workdir"])


def within_class(run_dir: str) -> dict[str, tuple[float, float, float]]:
    """attack -> (AUC, TPR@1%FPR, TPR@0.1%FPR) of members against same-class held-out."""
    z = np.load(os.path.join(run_dir, "membership.npz"))
    member = z["is_member__strict"]
    # strict = the paper's set, then the held-out records (protocols.target_sets)
    keep = member | (np.arange(len(member)) >= len(z["index__paper"]))
    out = {}
    for key in z.files:
        if key.startswith("score__") and key.endswith("__strict"):
            attack = key.split("__")[1]
            fpr, tpr, _ = metrics.roc_curve(member[keep], z[key][keep])
            out[attack] = (
                metrics.auc(fpr, tpr),
                metrics.tpr_at_fpr(fpr, tpr, 0.01),
                metrics.tpr_at_fpr(fpr, tpr, 0.001),
            )
    return out


def main(argv):
    del argv
    groups: dict[str, list[dict]] = {}
    single = os.path.exists(os.path.join(_WORKDIR.value, "membership.npz"))  # one run
    found = [_WORKDIR.value] if single else glob.glob(os.path.join(_WORKDIR.value, "runs", "*"))
    for run_dir in sorted(found):
        if os.path.exists(os.path.join(run_dir, "results.json")):
            setting = os.path.basename(run_dir).rsplit("_seed", 1)[0]
            groups.setdefault(setting, []).append(within_class(run_dir))
    print("| setting | attack | seeds | AUC | TPR@1%FPR | TPR@0.1%FPR |")
    print("|---|---|---|---|---|---|")
    for setting, runs in groups.items():
        for attack in runs[0]:
            v = np.array([r[attack] for r in runs if attack in r])
            cells = [_cell(*intervals.mean_std_ci95(column)) for column in v.T]
            print(f"| {setting} | {attack} | {len(v)} | " + " | ".join(cells) + " |")
    print(f"\n{intervals.NOTE}")


def _cell(mean: float, std: float | None, half: float | None) -> str:
    del std  # the table shows the interval; one seed has neither
    return f"{mean:.3f}" + (f" ± {half:.3f}" if half is not None else "")


if __name__ == "__main__":
    app.run(main)
