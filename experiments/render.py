"""Renders a run's results.json and a benchmark document as text.

One list of columns per table: `run_tables` lays them out as the Markdown docs/results.md
quotes (`experiments/report.py`), `run_summary` prints the columns that carry a short
name as the lines a launcher shows after a run. A metric added to results.json is
rendered by adding one `Column` here.

`benchmark_tables` renders the JSON of `experiments/benchmark.py` (with the JSON lines of
`experiments/torch_baseline.py`) as docs/speed.md.
"""

import dataclasses
from collections.abc import Callable
from typing import Any


def _num(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"


@dataclasses.dataclass(frozen=True)
class Column:
    header: str  # the Markdown header (in the caption: the words before the value)
    cell: Callable[[Any], str]  # the cell, from the run's result or one attack's metrics
    short: str | None = None  # its name in the short form; None: Markdown only


def _field(name, digits=3):
    return lambda m: _num(m[name], digits)


def _count(name):
    return lambda m: str(m[name])


def _d_gen(r):
    return r.get("d_gen") or {}


# Markdown: "victim holds k=2 labels [4, 6]; generator started at round 42; wall time 233 s".
CAPTION = (
    Column(
        "victim holds",
        lambda r: f"k={r['victim_num_labels']} labels {r['victim_labels']}",
        "victim holds",
    ),
    Column(
        "generator started at round",
        lambda r: str(r["gan_start_round"]),
        "generator started at round",
    ),
    Column("wall time", lambda r: f"{r['wall_seconds']:.0f} s", "wall time"),
)

HEADLINE = (
    Column(
        "final main-task acc.", _field("final_main_task_accuracy", 4), "final main-task accuracy"
    ),
    Column("global model acc.", _field("global_model_accuracy", 4), "global model accuracy"),
    Column(
        "attack classifier acc. (gan)",
        _field("attack_model_accuracy", 4),
        "attack classifier accuracy (gan)",
    ),
    Column("oracle acc.", _field("oracle_model_accuracy", 4), "oracle accuracy"),
    Column(
        "D_gen kept / generated",
        lambda r: f"{_d_gen(r).get('kept', 'n/a')} / {_d_gen(r).get('generated', 'n/a')}",
    ),
    Column(
        "D_gen diversity (real)",
        lambda r: (
            f"{_num(_d_gen(r).get('diversity'), 2)} ({_num(_d_gen(r).get('real_diversity'), 2)})"
        ),
    ),
)

# One row per attack x protocol, after the attack and protocol cells.
ATTACK = (
    Column("TP", _count("tp"), "TP"),
    Column("FN", _count("fn"), "FN"),
    Column("FP", _count("fp"), "FP"),
    Column("TN", _count("tn"), "TN"),
    Column("TPR (paper's acc.)", _field("tpr"), "TPR"),
    Column("FPR", _field("fpr"), "FPR"),
    Column("precision", _field("precision")),
    Column("bal. acc.", _field("balanced_accuracy")),
    Column("AUC", _field("auc"), "AUC"),
    Column("TPR@1%FPR", _field("tpr_at_1pct_fpr"), "TPR@1%FPR"),
    Column("TPR@0.1%FPR", _field("tpr_at_0.1pct_fpr")),
)

_NOT_RUN = "generator never started"


def _md_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_header(headers) -> list[str]:
    return [_md_row(headers), "|" + "---|" * len(headers)]


def run_tables(r: dict) -> str:
    """A run's results.json as Markdown: caption, accuracies, every attack x protocol."""
    lines = ["; ".join(f"{c.header} {c.cell(r)}" for c in CAPTION), ""]
    lines += _md_header([c.header for c in HEADLINE])
    lines += [_md_row(c.cell(r) for c in HEADLINE), ""]
    lines += _md_header(["attack", "protocol", *(c.header for c in ATTACK)])
    for attack, per_protocol in r["attacks"].items():
        if per_protocol is None:
            lines.append(f"| {attack} | ({_NOT_RUN}) |" + " |" * len(ATTACK))
            continue
        for protocol, m in per_protocol.items():
            lines.append(_md_row([attack, protocol, *(c.cell(m) for c in ATTACK)]))
    return "\n".join(lines)


def run_summary(r: dict) -> str:
    """The short form of `run_tables`: one line per short-named value, one per attack row."""
    lines = [f"{c.short}: {c.cell(r)}" for c in (*CAPTION, *HEADLINE) if c.short]
    for attack, per_protocol in r["attacks"].items():
        if per_protocol is None:
            lines.append(f"{attack:>15s}: not run (the {_NOT_RUN})")
            continue
        for protocol, m in per_protocol.items():
            cells = "  ".join(f"{c.short} {c.cell(m)}" for c in ATTACK if c.short)
            lines.append(f"{attack:>15s} / {protocol:<6s} {cells}")
    return "\n".join(lines)


_ENGINE_MODES = (
    "engine_seq",
    "engine_vmap",
    "engine_mesh",
    "python_loop",
    "python_loop_xla",
    "single_client",
)


def benchmark_tables(b: dict, torch_records: list[dict]) -> str:
    """The benchmark document as Markdown (every number docs/speed.md cites).

    GFLOP/s count the model's arithmetic (the document's ``flops_per_sample``: XLA's count
    of the im2col step, whose matmuls are the model's MACs) for every row, since XLA's
    cost analysis does not count the cuDNN convolutions of the native lowering on GPUs.
    PyTorch rows come from the document (``pytorch_*``) and from `torch_records` (JSON
    lines of `experiments/torch_baseline.py`, older files)."""
    records = b["records"] + [dict(r, mode=r.get("mode", "pytorch_loop")) for r in torch_records]
    by = {(r["mode"], r.get("clients")): r for r in records}
    counts = sorted({r["clients"] for r in records if r["mode"] == "engine_seq"})
    cpu = b.get("cpu", {})
    lines = [
        f"backend {b['backend']}, jax {b['jax']}, CPU {cpu.get('model', 'not recorded')} "
        f"({', '.join(cpu.get('isa', [])) or 'ISA not recorded'}), batch {b['batch_size']}, "
        f"{b['records_per_client']} records per client, medians of {b['repeats']}; "
        f"sgemm {b['sgemm_gflops']:.0f} GFLOP/s{_peak_note(b)}; "
        f"{b['flops_per_sample'] / 1e6:.2f} MFLOP per training sample (XLA cost analysis)",
    ]
    lines += _throughput_table(b, records, counts)
    lines += _ratio_table(b, by, records, counts)
    if "engine_scaling_last_over_first" in b:
        lines += [
            "",
            f"engine_seq samples/s at {counts[-1]} clients / at {counts[0]} clients: "
            f"{b['engine_scaling_last_over_first']:.2f}",
        ]
    lines += _sweep_table(b["records"])
    lines += _profile_table(b.get("layer_profile_ms"))
    lines += _generator_table(b["records"])
    return "\n".join(lines)


def _peak_note(b: dict) -> str:
    measured = b.get("sgemm_gflops_measured")
    if not measured:
        return ""
    return f" (the faster of {' and '.join(f'{g:.0f}' for g in measured)}, at start and end)"


def _pytorch(records: list[dict]) -> list[dict]:
    return [r for r in records if r["mode"].startswith("pytorch") and "samples_per_second" in r]


def _throughput_table(b: dict, records: list[dict], counts: list[int]) -> list[str]:
    """Samples/s, compile seconds, GFLOP/s, fraction of peak, cores busy per mode x clients."""
    by = {(r["mode"], r.get("clients")): r for r in records}
    lines = [
        "",
        "| mode | clients | samples/s | compile s | GFLOP/s | of sgemm peak | cores busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in _ENGINE_MODES:
        for n in dict.fromkeys([1, *counts]):  # single_client is n=1; --clients may hold 1
            r = by.get((mode, n))
            if r:
                gflops = r["samples_per_second"] * b["flops_per_sample"] / 1e9
                label = f"{mode} ({r['devices']} devices)" if mode == "engine_mesh" else mode
                lines.append(
                    f"| {label} | {n} | {r['samples_per_second']:,.0f} | "
                    f"{r['compile_seconds']:.2f} | {gflops:.1f} | "
                    f"{gflops / b['sgemm_gflops']:.0%} | {r['cores_busy']:.2f} |"
                )
    for r in sorted(_pytorch(records), key=lambda r: (r["clients"], r["mode"])):
        where = f"{r['torch']}, {r.get('device', 'cpu')}, {r['threads']} threads"
        lines.append(
            f"| {r['mode']} ({where}) | {r['clients']} | {r['samples_per_second']:,.0f} | | | | |"
        )
    return lines


def _ratio_table(b: dict, by: dict, records: list[dict], counts: list[int]) -> list[str]:
    """The engine's round as the backend runs it by default (clients in sequence on CPU,
    one vmap elsewhere) over each alternative's samples/s, per client count; PyTorch's
    fastest variant at that count; and, where the document has them, the round sharded
    over the devices (engine_mesh) over the same PyTorch."""
    engine_mode = "engine_seq" if b["backend"] == "cpu" else "engine_vmap"
    mesh = any(mode == "engine_mesh" for mode, _ in by)
    lines = [
        "",
        f"| clients | {engine_mode} / python_loop | {engine_mode} / python_loop_xla | "
        f"{engine_mode} / fastest pytorch |" + (" engine_mesh / fastest pytorch |" if mesh else ""),
        "|---|---|---|---|" + ("---|" if mesh else ""),
    ]
    for n in counts:
        engine = by[(engine_mode, n)]["samples_per_second"]
        cells = []
        for mode in ("python_loop", "python_loop_xla"):
            other = by.get((mode, n))
            cells.append("n/a" if other is None else f"{engine / other['samples_per_second']:.2f}")
        torch = [r for r in _pytorch(records) if r["clients"] == n]
        best = max(torch, key=lambda r: r["samples_per_second"], default=None)
        for mode in (engine_mode, "engine_mesh") if mesh else (engine_mode,):
            row = by.get((mode, n))
            ratio = (
                None
                if best is None or row is None
                else row["samples_per_second"] / best["samples_per_second"]
            )
            cells.append("n/a" if ratio is None else f"{ratio:.2f} ({best['mode']})")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def _sweep_table(records: list[dict]) -> list[str]:
    """Seconds per run-round of R runs: one after another, one vmap, one lax.map."""
    rows = [r for r in records if r["mode"] in ("sweep_sequential", "sweep_batched")]
    if not rows:
        return []
    lines = [
        "",
        "| runs R | sequential s/run-round | batched vmap | batched map | auto picks |",
        "|---|---|---|---|---|",
    ]
    for n in sorted({r["runs"] for r in rows}):
        cell = {r["run_batching"]: r for r in rows if r["runs"] == n}
        seq = cell["-"]["seconds_per_run_round"]

        def fmt(key, seq=seq, cell=cell):
            if key not in cell:
                return "n/a"
            t = cell[key]["seconds_per_run_round"]
            return f"{t:.4f} ({seq / t:.2f}x)"

        lines.append(
            f"| {n} | {seq:.4f} | {fmt('vmap')} | {fmt('map')} | {cell['-']['auto_picks']} |"
        )
    return lines


def _profile_table(profile: dict | None) -> list[str]:
    if not profile:
        return []
    lines = ["", "| layer (forward + backward, batch of the benchmark) | ms |", "|---|---|"]
    return lines + [f"| {layer} | {ms:.2f} |" for layer, ms in profile.items()]


def _generator_table(records: list[dict]) -> list[str]:
    """Generator steps/s and samples/s per mode, then the attack classifier's samples/s."""
    extra = [r for r in records if r["mode"].startswith("generator_")]
    extra += [r for r in records if r["mode"] == "attack_classifier"]
    if not extra:
        return []
    lines = ["", "| measurement | steps/s | samples/s |", "|---|---|---|"]
    for r in extra:
        steps = r.get("generator_steps_per_second")
        samples = r.get("generated_samples_per_second", r.get("samples_per_second"))
        lines.append(
            f"| {r['mode']} | {'' if steps is None else f'{steps:.1f}'} | {samples:,.0f} |"
        )
    return lines
