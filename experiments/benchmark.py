"""Throughput of the engine: the jitted FedAvg round against a Python loop of client steps.

    python experiments/benchmark.py --json=runs/benchmark.json
    python experiments/benchmark.py --clients=5,20 --repeats=3 --records=256

For the MNIST Table II model, local batch 64, at each client count, with medians over
``--repeats`` timed calls after one warm-up call:

* ``engine_seq`` / ``engine_vmap``: the engine's jitted round (`federated.make_round`),
  clients in sequence inside the compiled round (the CPU default) or one vmap over all.
* ``python_loop``: a Python loop over clients and over their minibatches, calling a jitted
  single-client SGD step on device-resident batches, then a jitted FedAvg (how FedJAX's
  default for-each-client backend runs clients).
* ``python_loop_xla``: the same loop with XLA's native convolution (what `flax.linen.Conv`
  lowers to), the straightforward alternative.
* ``single_client``: one client's whole local update, jitted, alone.

Each record: mode, clients, backend, samples per second, compile seconds, FLOPs per
training sample (XLA's cost analysis of one jitted step), achieved GFLOP/s and the
fraction of this machine's fp32 matmul peak (a 2048 x 2048 sgemm, measured here). Also the
generator's steps per second and the attack classifier's training samples per second.
"""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_CLIENTS = flags.DEFINE_list("clients", ["5", "20", "100"], "Client counts.")
_RECORDS = flags.DEFINE_integer("records", 256, "Records per client (one local epoch).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Local batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (median).")
_MODES = flags.DEFINE_list(
    "modes",
    ["engine_seq", "engine_vmap", "python_loop", "python_loop_xla", "single_client"],
    "Which measurements to run.",
)
_JSON = flags.DEFINE_string("json", None, "Also write the JSON document to this file.")
_GAN = flags.DEFINE_bool("gan", True, "Also measure generator and attack-classifier speed.")
_PROFILE = flags.DEFINE_bool("profile", True, "Also time each layer's forward + backward.")


_BUSY = {}  # cores busy (process CPU seconds / wall seconds) of the last measurement


def _median_seconds(fn, repeats):
    fn()  # warm-up (compiles if needed)
    times = []
    cpu = os.times()
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    after = os.times()
    _BUSY["last"] = (after.user + after.system - cpu.user - cpu.system) / sum(times)
    return statistics.median(times)


def _layer_profile(batch, repeats):
    """Forward + backward milliseconds of each Table II MNIST layer for one batch."""
    import jax
    import jax.numpy as jnp

    from fedgan_jax import models

    key = jax.random.key(0)
    layers = {
        "conv1 5x5 1->16": ((batch, 28, 28, 1), (5, 5, 1, 16), False),
        "conv2 5x5 16->32": ((batch, 12, 12, 16), (5, 5, 16, 32), True),
    }
    profile = {}
    for name, (x_shape, k_shape, needs_dx) in layers.items():
        x = jax.random.normal(key, x_shape)
        k = 0.1 * jax.random.normal(key, k_shape)
        for impl, conv in (("im2col", models.conv_im2col), ("xla", models.conv_xla)):
            argnums = (0, 1) if needs_dx else (0,)
            grad = jax.jit(jax.grad(lambda k, x, c=conv: jnp.sum(c(x, k) ** 2), argnums))
            profile[f"{name} [{impl}]"] = 1e3 * _median_seconds(
                lambda g=grad, a=(k, x): jax.block_until_ready(g(*a)), repeats
            )
    w = 0.05 * jax.random.normal(key, (512, 1000))
    h = jax.random.normal(key, (batch, 512))
    dense = jax.jit(jax.grad(lambda w, h: jnp.sum(jax.nn.relu(h @ w) ** 2), (0, 1)))
    profile["dense 512->1000"] = 1e3 * _median_seconds(
        lambda: jax.block_until_ready(dense(w, h)), repeats
    )
    a = jax.random.normal(key, (batch, 24, 24, 16))
    pool = jax.jit(jax.grad(lambda a: jnp.sum(models.max_pool_2x2(jax.nn.relu(a)) ** 2)))
    profile["relu+maxpool 24x24x16"] = 1e3 * _median_seconds(
        lambda: jax.block_until_ready(pool(a)), repeats
    )
    return profile


def main(argv):
    del argv
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from fedgan_jax import attack, federated, gan, models
    from fedgan_jax.adversary import AdversaryView
    from fedgan_jax.partition import ClientData

    backend = jax.default_backend()
    batch, records, repeats = _BATCH.value, _RECORDS.value, _REPEATS.value
    out = {
        "backend": backend,
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "batch_size": batch,
        "records_per_client": records,
        "repeats": repeats,
        "records": [],
    }

    # The machine's attainable fp32 peak: a large sgemm.
    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    mm = jax.jit(lambda x: x @ x)
    out["sgemm_gflops"] = 2 * 2048**3 / _median_seconds(lambda: mm(a).block_until_ready(), 5) / 1e9

    def model_for(impl):
        model = models.classifier("mnist", impl)
        params = models.init_params(model, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
        return model, params, (lambda p, x: model.apply({"params": p}, x))

    def sgd_step(apply_fn):
        def step(params, xb, yb):
            grads = jax.grad(
                lambda p: optax.softmax_cross_entropy_with_integer_labels(
                    apply_fn(p, xb), yb
                ).mean()
            )(params)
            return jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)

        return jax.jit(step)

    flops = {}
    for impl in ("im2col", "xla"):
        _, params, apply_fn = model_for(impl)
        xb, yb = jnp.zeros((batch, 28, 28, 1)), jnp.zeros((batch,), jnp.int32)
        cost = sgd_step(apply_fn).lower(params, xb, yb).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        flops[impl] = float(cost["flops"]) / batch
    out["flops_per_sample"] = flops["im2col"]

    def record(mode, n, seconds, compile_seconds, impl="im2col", samples=None):
        samples = n * records if samples is None else samples
        sps = samples / seconds
        rec = {
            "mode": mode,
            "clients": n,
            "backend": backend,
            "samples_per_second": sps,
            "seconds_per_call": seconds,
            "compile_seconds": compile_seconds,
            "flops_per_sample": flops[impl],
            "achieved_gflops": sps * flops[impl] / 1e9,
            "fraction_of_peak": sps * flops[impl] / 1e9 / out["sgemm_gflops"],
            "cores_busy": _BUSY["last"],
        }
        out["records"].append(rec)
        print(json.dumps(rec), flush=True)

    for n in map(int, _CLIENTS.value):
        key = jax.random.key(n)
        x = jax.random.normal(key, (n, records, 28, 28, 1))
        y = jax.random.randint(key, (n, records), 0, 10)
        clients = ClientData(x=x, y=y, counts=jnp.full((n,), records, jnp.int32))
        for mode, chunk in (("engine_seq", 1), ("engine_vmap", 0)):
            if mode not in _MODES.value:
                continue
            _, params, apply_fn = model_for("im2col")
            update = federated.make_client_update(apply_fn, local_epochs=1, batch_size=batch)
            round_fn = jax.jit(federated.make_round(update, num_clients=n, client_chunk=chunk))
            tic = time.perf_counter()
            compiled = round_fn.lower(params, clients, key, 0.05).compile()
            compile_s = time.perf_counter() - tic
            seconds = _median_seconds(
                lambda c=compiled, a=(params, clients, key, 0.05): jax.block_until_ready(c(*a)),
                repeats,
            )
            record(mode, n, seconds, compile_s)
        for mode, impl in (("python_loop", "im2col"), ("python_loop_xla", "xla")):
            if mode not in _MODES.value:
                continue
            _, params, apply_fn = model_for(impl)
            step = sgd_step(apply_fn)
            steps = records // batch
            batches = [
                [
                    (x[c, s * batch : (s + 1) * batch], y[c, s * batch : (s + 1) * batch])
                    for s in range(steps)
                ]
                for c in range(n)
            ]  # staged on device
            mean = jax.jit(lambda trees: jax.tree.map(lambda *a: sum(a) / len(a), *trees))
            tic = time.perf_counter()
            step.lower(params, *batches[0][0]).compile()
            compile_s = time.perf_counter() - tic

            def loop(params=params, step=step, batches=batches, mean=mean):
                results = []
                for client_batches in batches:
                    p = params
                    for xb, yb in client_batches:
                        p = step(p, xb, yb)
                    results.append(p)
                return jax.block_until_ready(mean(results))

            record(mode, n, _median_seconds(loop, repeats), compile_s, impl)
        if "single_client" in _MODES.value and n == int(_CLIENTS.value[0]):
            _, params, apply_fn = model_for("im2col")
            update = jax.jit(
                federated.make_client_update(apply_fn, local_epochs=1, batch_size=batch)
            )
            args = (params, x[0], y[0], jnp.int32(records), key, 0.05)
            tic = time.perf_counter()
            compiled = update.lower(*args).compile()
            compile_s = time.perf_counter() - tic
            seconds = _median_seconds(
                lambda c=compiled, a=args: jax.block_until_ready(c(*a)), repeats
            )
            record("single_client", 1, seconds, compile_s)

    if _GAN.value:
        model, params, apply_fn = model_for("im2col")
        declared = np.eye(5, 10, dtype=bool) | np.eye(5, 10, 5, dtype=bool)
        view = AdversaryView(
            own_x=jnp.zeros((256, 28, 28, 1)),
            own_y=jnp.zeros(256, jnp.int32),
            own_count=jnp.int32(256),
            declared=jnp.asarray(declared),
            victim=jnp.int32(1),
            adversary=jnp.int32(0),
        )
        for mode in gan.MODES:
            trainer = gan.make_gan_trainer(
                dataset="mnist", classifier=model, mode=mode, steps_per_round=10
            )
            state = trainer.init(jax.random.key(1), view)
            update = jax.jit(trainer.update)
            seconds = _median_seconds(
                lambda u=update, s=state: jax.block_until_ready(u(s, params, view, key)), repeats
            )
            rec = {
                "mode": f"generator_{mode}",
                "backend": backend,
                "generator_steps_per_second": 10 / seconds,
                "generated_samples_per_second": 10 * 80 / seconds,
            }
            out["records"].append(rec)
            print(json.dumps(rec), flush=True)
        fit = jax.jit(
            attack.make_classifier_trainer(
                model, (28, 28, 1), epochs=1, batch_size=batch, learning_rate=1e-3
            )
        )
        xs = jax.random.normal(key, (2048, 28, 28, 1))
        ys = jax.random.randint(key, (2048,), 0, 10)
        seconds = _median_seconds(
            lambda: jax.block_until_ready(fit(key, xs, ys, jnp.int32(2048))), repeats
        )
        rec = {
            "mode": "attack_classifier",
            "backend": backend,
            "samples_per_second": 2048 / seconds,
        }
        out["records"].append(rec)
        print(json.dumps(rec), flush=True)

    if _PROFILE.value:  # where a training step's time goes, layer by layer
        out["layer_profile_ms"] = _layer_profile(batch, repeats)
        print(json.dumps({"layer_profile_ms": out["layer_profile_ms"]}), flush=True)

    by = {(r["mode"], r.get("clients")): r for r in out["records"]}
    ratios = {}
    for n in map(int, _CLIENTS.value):
        engine, loop = by.get(("engine_seq", n)), by.get(("python_loop", n))
        if engine and loop:
            ratios[str(n)] = engine["samples_per_second"] / loop["samples_per_second"]
    out["engine_over_python_loop"] = ratios
    first, last = (
        by.get(("engine_seq", int(_CLIENTS.value[0]))),
        by.get(("engine_seq", int(_CLIENTS.value[-1]))),
    )
    if first and last:
        out["engine_scaling_last_over_first"] = (
            last["samples_per_second"] / first["samples_per_second"]
        )
    document = json.dumps(out, indent=2)
    print(document)
    if _JSON.value:
        from fedgan_jax import io

        io.write_text(_JSON.value, document + "\n")


if __name__ == "__main__":
    app.run(main)
