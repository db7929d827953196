"""Markdown tables of a finished run or benchmark, as the README quotes them.

    python experiments/report.py --workdir=runs/demo
    python experiments/report.py --benchmark=runs/benchmark.json \
        [--torch=runs/torch_baseline.jsonl]

For a run (results.json): the accuracies (main task, global model, attack classifier,
oracle) and every attack x protocol with TP/FN/FP/TN, the paper's accuracy (TPR), FPR,
precision, balanced accuracy, AUC and TPR at 1% / 0.1% FPR.

For a benchmark (the JSON of `experiments/benchmark.py`, optionally with the JSON lines of
`experiments/torch_baseline.py`): samples per second, compile seconds and fraction of the
sgemm peak per mode and client count, the ratios the README discusses, the layer profile,
generator and attack-classifier speed.

The tables themselves are `experiments/render.py`, which the run launchers share.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from experiments.render import benchmark_tables, run_tables  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir (holds results.json).")
_BENCHMARK = flags.DEFINE_string("benchmark", None, "A benchmark JSON (benchmark.py --json).")
_TORCH = flags.DEFINE_string("torch", None, "JSON lines of experiments/torch_baseline.py.")


def main(argv):
    del argv
    import json

    from fedgan_jax import io

    if not (_WORKDIR.value or _BENCHMARK.value):
        raise app.UsageError("give --workdir (a run) or --benchmark (a benchmark JSON)")
    if _WORKDIR.value:
        print(run_tables(io.read_json(os.path.join(_WORKDIR.value, "results.json"))))
    if _BENCHMARK.value:
        torch_records = []
        if _TORCH.value:
            with open(_TORCH.value) as f:
                torch_records = [json.loads(line) for line in f if line.strip()]
        print(benchmark_tables(io.read_json(_BENCHMARK.value), torch_records))


if __name__ == "__main__":
    app.run(main)
