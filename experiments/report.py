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
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir (holds results.json).")
_BENCHMARK = flags.DEFINE_string("benchmark", None, "A benchmark JSON (benchmark.py --json).")
_TORCH = flags.DEFINE_string("torch", None, "JSON lines of experiments/torch_baseline.py.")


def _num(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


def tables(r: dict) -> str:
    d = r.get("d_gen") or {}
    lines = [
        f"victim holds k={r['victim_num_labels']} labels {r['victim_labels']}; "
        f"generator started at round {r['gan_start_round']}; "
        f"wall time {r['wall_seconds']:.0f} s",
        "",
        "| final main-task acc. | global model acc. | attack classifier acc. (gan) | "
        "oracle acc. | D_gen kept / generated | D_gen diversity (real) |",
        "|---|---|---|---|---|---|",
        f"| {_num(r['final_main_task_accuracy'], 4)} | {_num(r['global_model_accuracy'], 4)} | "
        f"{_num(r['attack_model_accuracy'], 4)} | {_num(r['oracle_model_accuracy'], 4)} | "
        f"{d.get('kept', 'n/a')} / {d.get('generated', 'n/a')} | "
        f"{_num(d.get('diversity'), 2)} ({_num(d.get('real_diversity'), 2)}) |",
        "",
        "| attack | protocol | TP | FN | FP | TN | TPR (paper's acc.) | FPR | precision | "
        "bal. acc. | AUC | TPR@1%FPR | TPR@0.1%FPR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for attack, per_protocol in r["attacks"].items():
        if per_protocol is None:
            lines.append(f"| {attack} | (generator never started) |" + " |" * 11)
            continue
        for protocol, m in per_protocol.items():
            lines.append(
                f"| {attack} | {protocol} | {m['tp']} | {m['fn']} | {m['fp']} | {m['tn']} | "
                f"{_num(m['tpr'])} | {_num(m['fpr'])} | {_num(m['precision'])} | "
                f"{_num(m['balanced_accuracy'])} | {_num(m['auc'])} | "
                f"{_num(m['tpr_at_1pct_fpr'])} | {_num(m['tpr_at_0.1pct_fpr'])} |"
            )
    return "\n".join(lines)


_ENGINE_MODES = ("engine_seq", "engine_vmap", "python_loop", "python_loop_xla", "single_client")


def benchmark_tables(b: dict, torch_records: list[dict]) -> str:
    """The benchmark document as Markdown (every number the README's Speed section cites)."""
    by = {(r["mode"], r.get("clients")): r for r in b["records"]}
    counts = sorted({r["clients"] for r in b["records"] if r["mode"] == "engine_seq"})
    torch = {r["clients"]: r for r in torch_records}
    lines = [
        f"backend {b['backend']}, jax {b['jax']}, batch {b['batch_size']}, "
        f"{b['records_per_client']} records per client, medians of {b['repeats']}; "
        f"sgemm {b['sgemm_gflops']:.0f} GFLOP/s; "
        f"{b['flops_per_sample'] / 1e6:.2f} MFLOP per training sample (XLA cost analysis)",
        "",
        "| mode | clients | samples/s | compile s | GFLOP/s | of sgemm peak | cores busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in _ENGINE_MODES:
        for n in [1, *counts]:
            r = by.get((mode, n))
            if r:
                lines.append(
                    f"| {mode} | {n} | {r['samples_per_second']:,.0f} | "
                    f"{r['compile_seconds']:.2f} | {r['achieved_gflops']:.1f} | "
                    f"{r['fraction_of_peak']:.0%} | {r['cores_busy']:.2f} |"
                )
    for n in counts:
        if n in torch:
            lines.append(
                f"| pytorch_loop ({torch[n]['torch']}, {torch[n]['threads']} threads) | {n} | "
                f"{torch[n]['samples_per_second']:,.0f} | | | | |"
            )
    lines += [
        "",
        "| clients | engine / python_loop | engine / python_loop_xla | engine / pytorch |",
        "|---|---|---|---|",
    ]
    for n in counts:
        engine = by[("engine_seq", n)]["samples_per_second"]
        others = [by.get((mode, n)) for mode in ("python_loop", "python_loop_xla")]
        others.append(torch.get(n))
        cells = [
            "n/a" if other is None else f"{engine / other['samples_per_second']:.2f}"
            for other in others
        ]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if "engine_scaling_last_over_first" in b:
        lines += [
            "",
            f"engine samples/s at {counts[-1]} clients / at {counts[0]} clients: "
            f"{b['engine_scaling_last_over_first']:.2f}",
        ]
    profile = b.get("layer_profile_ms")
    if profile:
        lines += ["", "| layer (forward + backward, batch of the benchmark) | ms |", "|---|---|"]
        lines += [f"| {layer} | {ms:.2f} |" for layer, ms in profile.items()]
    extra = [r for r in b["records"] if r["mode"].startswith("generator_")]
    extra += [r for r in b["records"] if r["mode"] == "attack_classifier"]
    if extra:
        lines += ["", "| measurement | steps/s | samples/s |", "|---|---|---|"]
        for r in extra:
            steps = r.get("generator_steps_per_second")
            samples = r.get("generated_samples_per_second", r.get("samples_per_second"))
            lines.append(
                f"| {r['mode']} | {'' if steps is None else f'{steps:.1f}'} | {samples:,.0f} |"
            )
    return "\n".join(lines)


def main(argv):
    del argv
    import json

    from fedgan_jax import io

    if not (_WORKDIR.value or _BENCHMARK.value):
        raise app.UsageError("give --workdir (a run) or --benchmark (a benchmark JSON)")
    if _WORKDIR.value:
        print(tables(io.read_json(os.path.join(_WORKDIR.value, "results.json"))))
    if _BENCHMARK.value:
        torch_records = []
        if _TORCH.value:
            with open(_TORCH.value) as f:
                torch_records = [json.loads(line) for line in f if line.strip()]
        print(benchmark_tables(io.read_json(_BENCHMARK.value), torch_records))


if __name__ == "__main__":
    app.run(main)
