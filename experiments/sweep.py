"""Sweeps the victim's label count k and seeds in one launch (paper Figs. 6-8).

    python experiments/sweep.py --config=configs/demo.py --workdir=runs/sweep
    python experiments/sweep.py --config=configs/demo.py --workdir=runs/sweep \
        --config.sweep.label_counts='(1,2,3,5)' --config.sweep.seeds='(0,1)' \
        --config.sweep.batched=True

Finished runs are kept and an interrupted one resumes: launching the same command again
continues where it stopped. Writes summary.csv, summary.md and the figures (docs/usage.md, Outputs).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder of the sweep.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv  # launch.parse_flags refuses extra arguments
    from fedgan_jax.driver.sweep import run_sweep

    summary = launch.guarded(lambda: run_sweep(_CONFIG.value, _WORKDIR.value))
    if not summary:  # a process other than process 0 of a multi-process launch
        return
    print(open(os.path.join(_WORKDIR.value, "summary.md")).read())
    print(f"{len(summary['rows'])} rows; outputs in {_WORKDIR.value}")
    if summary["failed"]:  # the summary covers the others; the exit status says it
        names = ", ".join(name for name, _ in summary["failed"])
        print(
            f"Error: {len(summary['failed'])} run(s) stopped on non-finite values ({names}); "
            "each one's failed.json says where",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    launch.run(main, configs=("config",))
