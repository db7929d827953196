"""Runs one experiment: federation, the adversary's generator, every attack, every protocol.

    python experiments/run.py --config=configs/demo.py --workdir=runs/demo
    python experiments/run.py --config=configs/mnist.py --config.fl.rounds=20 --workdir=runs/x

Resumes from the workdir's checkpoint when it holds one of the same config. Errors in the
config or the data are one line on stderr and exit status 2 (``--verbose`` shows the
traceback). See README.md for every output file.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from fedgan_jax.experiment import train_and_evaluate

    result = launch.guarded(lambda: train_and_evaluate(_CONFIG.value, _WORKDIR.value))
    launch.summarize(result, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
