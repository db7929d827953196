"""Where one client's local training, or the engine's round, spends its time.

    python studies/step_profile.py [--variant=engine] [--steps=20] [--repeats=7]
    python studies/step_profile.py --round=20 --steps=4 [--repeats=5]

Runs ``--variant`` of `studies/step_levers.py` (``--steps`` SGD minibatches of 64 in
one jitted scan), or with ``--round=N`` the benchmark's ``engine_seq`` round of N clients
of ``--steps`` minibatches, ``--repeats`` times under `jax.profiler`; reads the Perfetto
trace and attributes each XLA:CPU operation's time to the network's layer and pass it
came from (the HLO's ``op_name`` metadata: ``forward Conv_1/dot_general``,
``backward Conv_1/dot_general`` ...; anything else is "outside the layers"). Prints, per
minibatch step, each layer and pass's time in matrix products (with their GFLOP/s, from
the jaxpr's dot_generals) and in other operations, then the costliest other operations.
The operations' times are summed beside the wall time, since independent operations may
overlap on the two threads.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from fedgan_jax.driver.outputs import cpu_info  # noqa: E402
from studies import step_levers  # noqa: E402
from studies.hlo_ops import instructions, layer, source  # noqa: E402

_VARIANT = flags.DEFINE_enum(
    "variant", "engine", list(step_levers.VARIANTS), "Which network of step_levers.py."
)
_ROUND = flags.DEFINE_integer(
    "round", 0, "Profile the engine's round over this many clients instead (0: a variant)."
)


def matmul_flops(jaxpr) -> collections.Counter:
    """2*M*N*K of every dot_general in a (closed) jaxpr, by `layer` of its name stack."""
    flops = collections.Counter()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            k = np.prod([eqn.invars[0].aval.shape[d] for d in contract])
            name = source(f"closed_call/{eqn.source_info.name_stack}/dot_general")
            flops[layer(name)] += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(k)
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    flops.update(matmul_flops(inner))
    return flops


def profile(fn, args, repeats: int) -> tuple[collections.Counter, float, str]:
    """Seconds inside each XLA operation over ``repeats`` calls, the wall time, and the
    compiled module's text."""
    compiled = fn.lower(*args).compile()
    for _ in range(2):
        jax.block_until_ready(compiled(*args))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        tic = time.perf_counter()
        for _ in range(repeats):
            jax.block_until_ready(compiled(*args))
        wall = time.perf_counter() - tic
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    spent = collections.Counter()
    for event in trace["traceEvents"] if isinstance(trace, dict) else trace:
        if event.get("ph") == "X":
            spent[event["name"]] += event.get("dur", 0) * 1e-6
    return spent, wall, compiled.as_text()


def table(spent, wall, hlo, flops, steps: int) -> str:
    """Markdown: per layer and pass, ms per step in matrix products (and their GFLOP/s)
    and in everything else; then the ten costliest other operations."""
    per_step = 1e3 / steps
    matmul, other, by_source = collections.Counter(), collections.Counter(), collections.Counter()
    for name, (src, is_dot) in instructions(hlo).items():
        (matmul if is_dot else other)[layer(src)] += spent.get(name, 0.0)
        if not is_dot:
            by_source[src] += spent.get(name, 0.0)
    total = sum(matmul.values()) + sum(other.values())
    lines = [
        "| layer, pass | matmul ms | matmul GFLOP/s | other ms | share |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(set(matmul) | set(other), key=lambda n: -(matmul[n] + other[n])):
        rate = f"{flops[name] * steps / matmul[name] / 1e9:.0f}" if matmul[name] else ""
        lines.append(
            f"| {name} | {matmul[name] * per_step:.2f} | {rate} | "
            f"{other[name] * per_step:.2f} | {(matmul[name] + other[name]) / total:.0%} |"
        )
    mm = sum(matmul.values())
    lines.append(
        f"| **all** | {mm * per_step:.2f} | {sum(flops.values()) * steps / mm / 1e9:.0f} | "
        f"{sum(other.values()) * per_step:.2f} | wall {wall * per_step:.2f} ms |"
    )
    lines += ["", "| costliest other operations | ms per step |", "|---|---|"]
    lines += [f"| {src} | {t * per_step:.2f} |" for src, t in by_source.most_common(10)]
    return "\n".join(lines)


def _round(clients: int, steps: int):
    """The benchmark's ``engine_seq`` round (`federated.make_round`, clients in sequence)
    over ``clients`` clients of ``steps`` minibatches of 64 random records each: (jitted
    round, its arguments, minibatch steps per call)."""
    from fedgan_jax.data.partition import ClientData
    from fedgan_jax.federation import fedavg as federated

    model = step_levers.models.classifier("mnist", "im2col")
    key = jax.random.key(0)
    records = steps * step_levers.BATCH
    x = jax.random.normal(key, (clients, records, 28, 28, 1))
    y = jax.random.randint(key, (clients, records), 0, 10)
    data = ClientData(x=x, y=y, counts=jax.numpy.full((clients,), records, jax.numpy.int32))
    params = step_levers.models.init_params(model, key, x[0, :1])
    update = federated.make_client_update(
        lambda p, b: model.apply({"params": p}, b), local_epochs=1, batch_size=step_levers.BATCH
    )
    round_fn = jax.jit(federated.make_round(update, num_clients=clients, client_chunk=1))
    return round_fn, (params, data, key, 0.05), clients * steps


def _local_training(steps: int):
    """``--variant``'s local training of ``steps`` minibatches: (jitted fn, args, steps)."""
    module, donate = step_levers.VARIANTS[_VARIANT.value]
    key = jax.random.key(0)
    xs = jax.random.normal(key, (steps, step_levers.BATCH, 28, 28, 1))
    ys = jax.random.randint(key, (steps, step_levers.BATCH), 0, 10)
    params = step_levers.models.init_params(module, key, xs[0])
    return step_levers.local_training(module, donate), (params, xs, ys), steps


def main(argv):
    del argv
    steps, repeats = step_levers._STEPS.value, step_levers._REPEATS.value
    if _ROUND.value:
        fn, args, per_call = _round(_ROUND.value, steps)
        what = f"the engine's round, {_ROUND.value} clients of {steps} minibatches"
    else:
        fn, args, per_call = _local_training(steps)
        what = f"variant {_VARIANT.value}, {steps} minibatches"
    flops = matmul_flops(fn.trace(*args).jaxpr.jaxpr)
    spent, wall, hlo = profile(fn, args, repeats)
    cpu = cpu_info()
    print(
        f"CPU: {cpu['model']} ({', '.join(cpu.get('isa', []))}), jax {jax.__version__}, "
        f"{what} of {step_levers.BATCH}, {repeats} calls; per minibatch step:"
    )
    print(f"matrix-product FLOP per step: {sum(flops.values()):,}")
    print(table(spent, wall, hlo, flops, per_call * repeats))


if __name__ == "__main__":
    app.run(main)
