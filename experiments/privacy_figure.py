"""Privacy-utility-attack figure of a DP sweep (configs/demo_dp.py).

    python experiments/privacy_figure.py --workdir=runs/dp [--protocol=paper]

Reads every ``runs/*/results.json`` of the sweep and groups the runs by setting (the run
name without its seed). Left: main-task accuracy against ``privacy.epsilon``; right: each
attack's TPR at 1% FPR against epsilon, with the (epsilon, delta)-DP bound on any
membership test, TPR <= e^epsilon x FPR + delta at FPR = 1% (Kairouz et al. 2015).
Runs without a finite epsilon (no noise) sit at the right edge, marked "none". Points are
means over seeds, error bars the 95% t-interval half-width (`fedgan_jax.evaluation.intervals`;
none for one seed); writes ``privacy_utility_attack.png`` and ``privacy_utility_attack.csv``
(each value as [mean, std, 95% half-width]) into the workdir. The rows come from
`fedgan_jax.driver.run_tables.privacy_rows`, the figure from
`fedgan_jax.evaluation.plots.privacy_utility_attack`.
"""

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedgan_jax.core import io  # noqa: E402
from fedgan_jax.driver import run_tables  # noqa: E402
from fedgan_jax.evaluation import plots  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the sweep.")
_PROTOCOL = flags.DEFINE_enum("protocol", "paper", ["paper", "strict"], "Target set.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    rows = run_tables.privacy_rows(run_tables.run_dirs([_WORKDIR.value]), _PROTOCOL.value)
    plots.privacy_utility_attack(rows, os.path.join(_WORKDIR.value, "privacy_utility_attack.png"))
    header = list(rows[0])
    table = [[r.get(k) for k in header] for r in rows]
    io.write_csv(os.path.join(_WORKDIR.value, "privacy_utility_attack.csv"), header, table)
    for r in rows:
        print(r)


if __name__ == "__main__":
    app.run(main)
