"""What each speed lever gives the engine's round on this machine.

    python studies/levers.py --json=runs/levers.json
    python studies/levers.py --levers=clients_on_cores --passes=3

Each lever is one `experiments/benchmark.py` process (``engine_seq`` at 5, 20 and 100
clients, medians of ``--repeats``), with XLA flags in ``XLA_FLAGS`` (read once, when
XLA starts, hence a process per lever) or benchmark flags. The baseline runs first and
last: their gap is the drift of the machine over the whole measurement, and a lever's
ratio means nothing below it. A flag this XLA does not know stops its process; the lever
is then reported as failed with its last line, not dropped. ``--passes=N`` runs the
levers N times, each pass after its own baseline, so that a lever near the noise shows
beside several baselines. Prints a markdown table of samples/s and the ratio to the
first baseline per client count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

# name -> (XLA_FLAGS added, benchmark.py flags added, what it changes)
LEVERS = {
    "baseline": ("", [], "the engine as it ships (im2col convolutions, clients in sequence)"),
    "conv_xla": ("", ["--conv_impl=xla"], "XLA's native convolution instead of im2col"),
    "clients_vmapped": ("", ["--modes=engine_vmap"], "one vmap over all clients (blocked)"),
    "clients_on_cores": (
        "",
        ["--modes=engine_mesh"],
        "one XLA device per core, the clients sharded over them (fl.mesh_devices=-1)",
    ),
    "xnnpack": ("--xla_cpu_use_xnnpack=true", [], "XNNPACK kernels for dots/convolutions"),
    "onednn": ("--xla_cpu_use_onednn=true", [], "oneDNN kernels for dots/convolutions"),
    "fast_math": ("--xla_cpu_enable_fast_math=true", [], "fast math (reassociation, approx.)"),
    "eigen_one_thread": ("--xla_cpu_multi_thread_eigen=false", [], "Eigen on one thread"),
    "no_fusion_emitters": ("--xla_cpu_use_fusion_emitters=false", [], "legacy fusion emitters"),
}

_LEVERS = flags.DEFINE_list("levers", list(LEVERS), "Levers to measure (baseline is added).")
_CLIENTS = flags.DEFINE_list("clients", ["5", "20", "100"], "Client counts.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (median).")
_JSON = flags.DEFINE_string("json", None, "Also write every lever's records to this file.")
_TIMEOUT = flags.DEFINE_integer("timeout", 900, "Seconds one lever's process may take.")
_PASSES = flags.DEFINE_integer(
    "passes",
    1,
    "Passes over the levers, each after a baseline (a lever near the noise "
    "then shows beside several baselines, not one).",
    lower_bound=1,
)


def measure(name: str) -> dict:
    """One lever's benchmark process: its engine rows, or the line it failed with."""
    xla_flags, args, what = LEVERS[name]
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS", ""), xla_flags) if f)
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        command = [
            sys.executable,
            os.path.join(here, "benchmark.py"),
            "--modes=engine_seq",
            f"--clients={','.join(_CLIENTS.value)}",
            f"--repeats={_REPEATS.value}",
            "--gan=false",
            "--profile=false",
            "--sweep_runs=",
            "--torch_python=",
            f"--json={out}",
            *args,
        ]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=_TIMEOUT.value
        )
        if done.returncode or not os.path.exists(out):
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            return {"lever": name, "what": what, "failed": last[:300]}
        with open(out) as f:
            document = json.load(f)
    rows = {
        r["clients"]: r["samples_per_second"]
        for r in document["records"]
        if str(r["mode"]).startswith("engine")
    }
    return {
        "lever": name,
        "what": what,
        "xla_flags": xla_flags,
        "args": args,
        "rows": rows,
        "cpu": document["cpu"],
        "sgemm_gflops": document["sgemm_gflops"],
    }


def sequence(levers: list[str], passes: int) -> list[str]:
    """The processes to run: each pass of the levers after a baseline, and a baseline
    last (a 'baseline' among `levers` is not run twice in a pass)."""
    others = [name for name in levers if name != "baseline"]
    return ["baseline", *others] * passes + ["baseline"]


def table(results: list[dict], counts: list[int]) -> str:
    """Markdown: samples/s per client count and the ratio to the first baseline."""
    base = results[0]["rows"]
    head = " | ".join(f"{n} clients" for n in counts)
    lines = [f"| lever | what it changes | {head} |", "|---|---|" + "---|" * len(counts)]
    for r in results:
        if "failed" in r:
            cells = " | ".join("failed" for _ in counts)
            lines.append(f"| {r['lever']} | {r['what']} ({r['failed']}) | {cells} |")
            continue
        cells = " | ".join(f"{r['rows'][n]:,.0f} ({r['rows'][n] / base[n]:.2f}x)" for n in counts)
        lines.append(f"| {r['lever']} | {r['what']} | {cells} |")
    return "\n".join(lines)


def main(argv):
    del argv
    unknown = [name for name in _LEVERS.value if name not in LEVERS]
    if unknown:
        raise app.UsageError(f"unknown levers {unknown}; known: {', '.join(LEVERS)}")
    names = sequence(_LEVERS.value, _PASSES.value)
    results = []
    for name in names:
        print(f"lever {name} ...", file=sys.stderr, flush=True)
        results.append(measure(name))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    counts = [int(n) for n in _CLIENTS.value]
    cpu = next((r["cpu"] for r in results if "cpu" in r), {})
    print(f"CPU: {json.dumps(cpu)}; medians of {_REPEATS.value}; the baseline first and last")
    print(table(results, counts))
    if _JSON.value:
        from fedgan_jax.core import io

        io.write_text(_JSON.value, json.dumps({"cpu": cpu, "levers": results}, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
