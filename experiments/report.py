"""Markdown tables of a finished run or benchmark, as the docs quote them.

    python experiments/report.py --workdir=runs/demo
    python experiments/report.py --benchmark=runs/benchmark.json \
        [--torch=runs/torch_baseline.jsonl]
    python experiments/report.py --sweep=results/membership_h200

For a run (results.json): the accuracies (main task, global model, attack classifier,
oracle) and every attack x protocol with TP/FN/FP/TN, the paper's accuracy (TPR), FPR,
precision, balanced accuracy, AUC and TPR at 1% / 0.1% FPR.

For a benchmark (the JSON of `experiments/benchmark.py`, optionally with the JSON lines of
`experiments/torch_baseline.py`): samples per second, compile seconds and fraction of the
sgemm peak per mode and client count, the ratios docs/speed.md discusses, the layer profile,
generator and attack-classifier speed.

For a sweep's folder (`--sweep`): rewrites its summary.md, and adds the ``_ci95`` columns
its CSVs lack, from summary.csv / accuracy.csv / upload_cost.csv alone (no runs needed;
`fedgan_jax.driver.sweep_report.rerender`), then prints it. experiments/sweep.py writes the same
files after its runs.

The tables themselves are `experiments/render.py`, which the run launchers share.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from experiments import launch  # noqa: E402
from experiments.render import benchmark_tables, run_tables  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir (holds results.json).")
_BENCHMARK = flags.DEFINE_string("benchmark", None, "A benchmark JSON (benchmark.py --json).")
_TORCH = flags.DEFINE_string("torch", None, "JSON lines of experiments/torch_baseline.py.")
_SWEEP = flags.DEFINE_string(
    "sweep", None, "A finished sweep's folder: rewrite its summary.md from its CSVs."
)


def main(argv):
    del argv  # launch.parse_flags refuses extra arguments
    import json

    from fedgan_jax.core import io

    if not (_WORKDIR.value or _BENCHMARK.value or _SWEEP.value):
        launch.usage_error(
            "give --workdir (a run), --sweep (a sweep's folder) or --benchmark (a benchmark JSON)"
        )
    if _SWEEP.value:
        from fedgan_jax.driver.sweep_report import rerender

        if not os.path.isfile(os.path.join(_SWEEP.value, "summary.csv")):
            launch.usage_error(f"{_SWEEP.value}: no summary.csv in it (not a finished sweep)")
        rerender(_SWEEP.value)
        print(open(os.path.join(_SWEEP.value, "summary.md")).read())
    if _WORKDIR.value:
        print(run_tables(io.read_json(results_path(_WORKDIR.value))))
    if _BENCHMARK.value:
        for path in filter(None, (_BENCHMARK.value, _TORCH.value)):
            if not os.path.isfile(path):
                launch.usage_error(f"{path}: no such file")
        torch_records = []
        if _TORCH.value:
            with open(_TORCH.value) as f:
                torch_records = [json.loads(line) for line in f if line.strip()]
        print(benchmark_tables(io.read_json(_BENCHMARK.value), torch_records))


def results_path(workdir: str) -> str:
    """`workdir`/results.json, or one line (exit 2) saying what the workdir holds instead."""
    path = os.path.join(workdir, "results.json")
    if os.path.isfile(path):
        return path
    if os.path.isfile(os.path.join(workdir, "sweep_config.json")):
        launch.usage_error(
            f"{workdir} is a sweep: its tables are in {os.path.join(workdir, 'summary.md')}; "
            f"for one of its runs give --workdir={os.path.join(workdir, 'runs', '<name>')}"
        )
    if os.path.isfile(os.path.join(workdir, "config.json")):
        ckpt = os.path.join(workdir, "checkpoints")
        steps = [int(d) for d in os.listdir(ckpt) if d.isdigit()] if os.path.isdir(ckpt) else []
        last = f"last checkpoint: round {max(steps)}" if steps else "no checkpoint yet"
        launch.usage_error(
            f"{workdir} holds an unfinished run ({last}): rerun its experiments/run.py "
            "command to finish it, then report"
        )
    what = "no such folder" if not os.path.isdir(workdir) else "no results.json in it"
    launch.usage_error(f"{workdir}: {what} (not a run's workdir)")


if __name__ == "__main__":
    launch.run(main)
