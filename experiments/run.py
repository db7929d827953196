"""Runs one experiment: federation, the adversary's generator, every attack, every protocol.

    python experiments/run.py --config=configs/demo.py --workdir=runs/demo
    python experiments/run.py --config=configs/mnist.py --config.fl.rounds=20 --workdir=runs/x

Resumes from the workdir's checkpoint when it holds one of the same config, and says so
first (``resuming runs/demo from round 40``). One launch at a time per workdir: a second
one stops, naming the first (pid, host, start). Mistakes are one line on stderr (``--verbose``
shows the traceback): exit status 2 for the command (flags, config, data, workdir), 1 when
the workdir stops taking writes, 130 after Ctrl-C (``interrupted at round N; rerun the same
command to resume from round M``). ``--help`` lists the config sections; every field is in
configs/default.py. Every output file: docs/usage.md, Outputs.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv  # launch.parse_flags refuses extra arguments
    from fedgan_jax.driver.experiment import train_and_evaluate

    result = launch.guarded(lambda: train_and_evaluate(_CONFIG.value, _WORKDIR.value))
    launch.summarize(result, _WORKDIR.value)


if __name__ == "__main__":
    launch.run(main, configs=("config",))
