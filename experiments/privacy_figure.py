"""Privacy-utility-attack figure of a DP sweep (configs/demo_dp.py).

    python experiments/privacy_figure.py --workdir=runs/dp [--protocol=paper]

Reads every ``runs/*/results.json`` of the sweep and groups the runs by setting (the run
name without its seed). Left: main-task accuracy against ``privacy.epsilon``; right: each
attack's TPR at 1% FPR against epsilon, with the (epsilon, delta)-DP bound on any
membership test, TPR <= e^epsilon x FPR + delta at FPR = 1% (Kairouz et al. 2015).
Runs without a finite epsilon (no noise) sit at the right edge, marked "none". Points are
means over seeds, error bars the 95% t-interval half-width (`fedgan_jax.evaluation.intervals`; none
for one seed); writes ``privacy_utility_attack.png`` and ``privacy_utility_attack.csv``
(each value as [mean, std, 95% half-width]) into the workdir.
"""

import glob
import json
import os
import re
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedgan_jax.core import io  # noqa: E402
from fedgan_jax.evaluation.intervals import mean_std_ci95  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the sweep.")
_PROTOCOL = flags.DEFINE_string("protocol", "paper", "paper | strict")
flags.mark_flags_as_required(["workdir"])
FPR = 0.01


def settings(workdir: str, protocol: str) -> list[dict]:
    """One row per setting: epsilon, delta, accuracy and each attack's TPR@1%FPR, as
    (mean, std, 95% t half-width) over its seeds (std and half-width None for one)."""
    groups: dict[str, list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(workdir, "runs", "*", "results.json"))):
        name = re.sub(r"_?seed\d+", "", os.path.basename(os.path.dirname(path)))
        groups.setdefault(name, []).append(json.load(open(path)))
    rows = []
    for name, results in groups.items():
        eps = [r["privacy"]["epsilon"] for r in results]
        row = {
            "setting": name,
            "seeds": len(results),
            "epsilon": None if None in eps else float(np.mean(eps)),
            "delta": results[0]["privacy"]["delta"],
            "accuracy": mean_std_ci95(r["final_main_task_accuracy"] for r in results),
        }
        for attack in results[0]["attacks"]:
            values = [
                r["attacks"][attack][protocol]["tpr_at_1pct_fpr"]
                for r in results
                if r["attacks"].get(attack)
            ]
            if values:
                row[attack] = mean_std_ci95(values)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["epsilon"] is None, r["epsilon"] or 0.0))


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = [r["epsilon"] for r in rows if r["epsilon"] is not None]
    edge = 2 * max(finite) if finite else 1.0
    x = np.array([edge if r["epsilon"] is None else r["epsilon"] for r in rows])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    acc = np.array([r["accuracy"] for r in rows], float)  # None (one seed): no error bar
    left.errorbar(x, acc[:, 0], acc[:, 2], marker="o")
    left.set(xlabel="epsilon", ylabel="main-task accuracy (95% t-interval)", xscale="log")
    attacks = [k for k in rows[0] if k not in ("setting", "seeds", "epsilon", "delta", "accuracy")]
    for attack in attacks:
        v = np.array([r.get(attack, (np.nan,) * 3) for r in rows], float)
        right.errorbar(x, v[:, 0], v[:, 2], marker="o", label=attack)
    grid = np.geomspace(min(x) / 2, edge, 200)
    right.plot(
        grid, np.minimum(1.0, np.exp(grid) * FPR + rows[0]["delta"]), "k--", label="DP bound"
    )
    right.set(xlabel="epsilon", ylabel="TPR at 1% FPR", xscale="log", ylim=(0, 1.05))
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.axvline(edge, color="grey", lw=0.5)
        ax.annotate("none", (edge, 0.02), xycoords=("data", "axes fraction"), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    rows = settings(_WORKDIR.value, _PROTOCOL.value)
    if not rows:
        raise SystemExit(f"no finished runs under {_WORKDIR.value}/runs")
    plot(rows, os.path.join(_WORKDIR.value, "privacy_utility_attack.png"))
    header = list(rows[0])
    table = [[r.get(k) for k in header] for r in rows]
    io.write_csv(os.path.join(_WORKDIR.value, "privacy_utility_attack.csv"), header, table)
    for r in rows:
        print(r)


if __name__ == "__main__":
    app.run(main)
