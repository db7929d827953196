"""Membership within the victim's classes, recomputed from runs' membership.npz files.

    python experiments/membership_report.py --workdir=runs/membership   # a sweep
    python experiments/membership_report.py --workdir=runs/frontier     # one run
    python experiments/membership_report.py --workdir=runs/f_seed0,runs/f_seed1,runs/f_seed2 \
        --protocols=within,strict,paper                                 # runs, grouped

``--workdir`` takes one or more folders, each a sweep (its ``runs/*``) or one run; runs
are grouped by setting, the folder's name without its seed part, so separate runs of one
config over seeds form one row. ``--protocols`` adds the strict and paper protocols' own
tables, recomputed from the same scores (``within`` is the default).

The strict protocol's non-members are the other participants' records *and* held-out
records of the victim's classes; a label rule already ranks the former low. The
``within`` table keeps only the latter: the victim's records against unseen records of
its own classes, where only membership can tell them apart. Per setting (every axis but
the seed): AUC, TPR at 1% and 0.1% FPR, mean ± the half-width of the 95% t-interval over
seeds (`fedgan_jax.evaluation.intervals`). The tables come from
`fedgan_jax.driver.run_tables`.
"""

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedgan_jax.driver import run_tables  # noqa: E402
from fedgan_jax.evaluation import intervals  # noqa: E402

_WORKDIR = flags.DEFINE_list("workdir", None, "Folders: sweeps or single runs.")
_PROTOCOLS = flags.DEFINE_list(
    "protocols", ["within"], f"Tables to print, of {run_tables.PROTOCOLS}."
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = sorted(set(_PROTOCOLS.value) - set(run_tables.PROTOCOLS))
    if unknown:
        raise app.UsageError(
            f"--protocols: {unknown} unknown; expected some of {run_tables.PROTOCOLS}"
        )
    found = run_tables.run_dirs(_WORKDIR.value)
    for protocol in _PROTOCOLS.value:
        print(f"\n{protocol}\n" if len(_PROTOCOLS.value) > 1 else "", end="")
        print("\n".join(run_tables.membership_table(found, protocol)))
    print(f"\n{intervals.NOTE}")


if __name__ == "__main__":
    app.run(main)
