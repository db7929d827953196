"""Throughput of the engine: the jitted FedAvg round against a Python loop of client steps.

    python experiments/benchmark.py --json=runs/benchmark.json
    python experiments/benchmark.py --clients=5,20 --repeats=3 --records=256

For the MNIST Table II model, local batch 64, at each client count, with medians over
``--repeats`` timed calls after one warm-up call:

* ``engine_seq`` / ``engine_vmap``: the engine's jitted round (`federated.make_round`),
  clients in sequence inside the compiled round (the CPU default) or one vmap over all.
* ``engine_mesh``: the same round with its client axis sharded over every device
  (``fl.mesh_devices=-1``; each device runs its clients as the backend's default does).
  On a CPU, ``--cpu_devices`` (default: one per core) splits the CPU into that many XLA
  devices, so that the cores train different clients at once; the other rows use the
  first device alone. With a single device it is skipped.
* ``python_loop``: a Python loop over clients and over their minibatches, calling a jitted
  single-client SGD step on device-resident batches, then a jitted FedAvg (how FedJAX's
  default for-each-client backend runs clients).
* ``python_loop_xla``: the same loop with XLA's native convolution (what `flax.linen.Conv`
  lowers to), the straightforward alternative.
* ``single_client``: one client's whole local update, jitted, alone.

Each record: mode, clients, backend, samples per second, compile seconds, FLOPs per
training sample (XLA's cost analysis of one jitted step), achieved GFLOP/s and the
fraction of this machine's fp32 matmul peak (a 2048 x 2048 sgemm, measured here at the
start and at the end; the faster of the two is the peak, since a shared machine's speed
drifts and a slow moment would flatter every fraction). Also the
generator's steps per second and the attack classifier's training samples per second.
"""

import dataclasses
import functools
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
    ["engine_seq", "engine_vmap", "engine_mesh", "python_loop", "python_loop_xla", "single_client"],
    "Which measurements to run.",
)
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices",
    0,
    "XLA devices the CPU is split into (jax_num_cpu_devices), for the engine_mesh rows; "
    "0: one per core. Ignored on accelerators.",
    lower_bound=0,
)
_JSON = flags.DEFINE_string("json", None, "Also write the JSON document to this file.")
_GAN = flags.DEFINE_bool("gan", True, "Also measure generator and attack-classifier speed.")
_PROFILE = flags.DEFINE_bool("profile", True, "Also time each layer's forward + backward.")
_CONV = flags.DEFINE_enum(
    "conv_impl", "auto", ["auto", "im2col", "xla"], "Convolutions of the engine rows."
)
_SWEEP_RUNS = flags.DEFINE_list(
    "sweep_runs", ["4", "8"], "Runs R of the batched-against-sequential sweep rows ([]: none)."
)
_SWEEP_ROUNDS = flags.DEFINE_integer("sweep_rounds", 3, "Timed demo rounds per sweep row.")
_SHADOWS = flags.DEFINE_list(
    "shadows", ["4"], "LiRA shadow federations (S) per shadow row on the demo data; empty: none."
)
_SHADOW_ROUNDS = flags.DEFINE_integer("shadow_rounds", 2, "Timed rounds per shadow row.")
_SHADOW_AXES = flags.DEFINE_list("shadow_axes", ["map", "vmap"], "How the shadows are mapped.")
_TORCH_PYTHON = flags.DEFINE_string(
    "torch_python",
    sys.executable,
    "Interpreter that runs experiments/torch_baseline.py (the PyTorch rows) if it can "
    "import torch; '' skips them.",
)
_TORCH_DEVICE = flags.DEFINE_string("torch_device", "cpu", "Device of the PyTorch rows.")


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

    from fedgan_jax.nn import models

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


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What every throughput record shares."""

    backend: str
    batch: int
    records: int  # per client
    repeats: int
    flops: dict  # FLOPs per training sample, by convolution implementation
    sgemm_gflops: float


def _sgemm_gflops():
    """The machine's attainable fp32 peak: a large sgemm."""
    import jax

    a = jax.random.normal(jax.random.key(0), (2048, 2048))
    mm = jax.jit(lambda x: x @ x)
    return 2 * 2048**3 / _median_seconds(lambda: mm(a).block_until_ready(), 5) / 1e9


def _model_for(impl):
    """The Table II MNIST classifier with `impl` convolutions: (model, params, apply_fn)."""
    import jax
    import jax.numpy as jnp

    from fedgan_jax.nn import models

    model = models.classifier("mnist", impl)
    params = models.init_params(model, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    return model, params, (lambda p, x: model.apply({"params": p}, x))


def _sgd_step(apply_fn):
    """A jitted single-client SGD step (learning rate 0.05) on one batch."""
    import jax
    import optax

    def step(params, xb, yb):
        grads = jax.grad(
            lambda p: optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, xb), yb).mean()
        )(params)
        return jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)

    return jax.jit(step)


def _flops_per_sample(batch):
    """XLA's cost analysis of one jitted SGD step, per training sample, by implementation."""
    import jax.numpy as jnp

    flops = {}
    for impl in ("im2col", "xla"):
        _, params, apply_fn = _model_for(impl)
        xb, yb = jnp.zeros((batch, 28, 28, 1)), jnp.zeros((batch,), jnp.int32)
        cost = _sgd_step(apply_fn).lower(params, xb, yb).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        flops[impl] = float(cost["flops"]) / batch
    return flops


def _emit(out, rec):
    """Adds a record to the document and prints it at once (progress while measuring)."""
    out["records"].append(rec)
    print(json.dumps(rec), flush=True)


def _throughput(setup, mode, n, seconds, compile_seconds, impl="im2col"):
    """One record: n clients' records trained in `seconds`."""
    sps = n * setup.records / seconds
    model_flops = setup.flops["im2col"]  # the model's MACs; XLA does not count cuDNN's convs
    return {
        "mode": mode,
        "clients": n,
        "backend": setup.backend,
        "conv_impl": impl,
        "samples_per_second": sps,
        "seconds_per_call": seconds,
        "compile_seconds": compile_seconds,
        "flops_per_sample": model_flops,
        "achieved_gflops": sps * model_flops / 1e9,
        "fraction_of_peak": sps * model_flops / 1e9 / setup.sgemm_gflops,
        "cores_busy": _BUSY["last"],
    }


def _compile_seconds(jitted, *args):
    """(compiled, seconds to lower and compile `jitted` for args)."""
    tic = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - tic


def _engine_records(setup, emit, n, clients, key):
    """The engine's jitted round: clients in sequence (engine_seq), one vmap (engine_vmap),
    or sharded over every device (engine_mesh)."""
    import jax

    from fedgan_jax.driver import engine
    from fedgan_jax.federation import fedavg as federated
    from fedgan_jax.nn import models

    impl = models.resolve_conv_impl(_CONV.value)
    default_chunk = 1 if setup.backend == "cpu" else 0
    for mode, chunk in (("engine_seq", 1), ("engine_vmap", 0), ("engine_mesh", default_chunk)):
        if mode not in _MODES.value or (mode == "engine_mesh" and jax.device_count() == 1):
            continue
        mesh = engine.make_mesh(jax.device_count()) if mode == "engine_mesh" else None
        _, params, apply_fn = _model_for(impl)
        update = federated.make_client_update(apply_fn, local_epochs=1, batch_size=setup.batch)
        round_fn = jax.jit(
            federated.make_round(update, num_clients=n, client_chunk=chunk, mesh=mesh)
        )
        args = (params, engine.place_clients(clients, mesh, run_axis=False), key, 0.05)
        compiled, compile_s = _compile_seconds(round_fn, *args)
        seconds = _median_seconds(
            lambda c=compiled, a=args: jax.block_until_ready(c(*a)), setup.repeats
        )
        record = _throughput(setup, mode, n, seconds, compile_s, impl)
        emit(dict(record, devices=1 if mesh is None else mesh.size))


def _loop_records(setup, emit, n, x, y):
    """A Python loop over clients and minibatches of a jitted SGD step, then a jitted mean."""
    import jax

    batch = setup.batch
    for mode, impl in (("python_loop", "im2col"), ("python_loop_xla", "xla")):
        if mode not in _MODES.value:
            continue
        _, params, apply_fn = _model_for(impl)
        step = _sgd_step(apply_fn)
        steps = setup.records // batch
        batches = [
            [
                (x[c, s * batch : (s + 1) * batch], y[c, s * batch : (s + 1) * batch])
                for s in range(steps)
            ]
            for c in range(n)
        ]  # staged on device
        mean = jax.jit(lambda trees: jax.tree.map(lambda *a: sum(a) / len(a), *trees))
        _, compile_s = _compile_seconds(step, params, *batches[0][0])

        def loop(params=params, step=step, batches=batches, mean=mean):
            results = []
            for client_batches in batches:
                p = params
                for xb, yb in client_batches:
                    p = step(p, xb, yb)
                results.append(p)
            return jax.block_until_ready(mean(results))

        seconds = _median_seconds(loop, setup.repeats)
        emit(_throughput(setup, mode, n, seconds, compile_s, impl))


def _single_client_record(setup, x, y, key):
    """One client's whole local update, jitted, alone."""
    import jax
    import jax.numpy as jnp

    from fedgan_jax.federation import fedavg as federated

    _, params, apply_fn = _model_for("im2col")
    update = jax.jit(federated.make_client_update(apply_fn, local_epochs=1, batch_size=setup.batch))
    args = (params, x[0], y[0], jnp.int32(setup.records), key, 0.05)
    compiled, compile_s = _compile_seconds(update, *args)
    seconds = _median_seconds(
        lambda c=compiled, a=args: jax.block_until_ready(c(*a)), setup.repeats
    )
    return _throughput(setup, "single_client", 1, seconds, compile_s)


def _federated_records(setup, emit, n):
    """Every federated-round record at n clients, on random data drawn from key(n)."""
    import jax
    import jax.numpy as jnp

    from fedgan_jax.data.partition import ClientData

    key = jax.random.key(n)
    x = jax.random.normal(key, (n, setup.records, 28, 28, 1))
    y = jax.random.randint(key, (n, setup.records), 0, 10)
    clients = ClientData(x=x, y=y, counts=jnp.full((n,), setup.records, jnp.int32))
    _engine_records(setup, emit, n, clients, key)
    _loop_records(setup, emit, n, x, y)
    if "single_client" in _MODES.value and n == int(_CLIENTS.value[0]):
        emit(_single_client_record(setup, x, y, key))


def _generator_records(setup, emit, key):
    """Each generator mode's steps per second (10 steps per round, 80 samples per step)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fedgan_jax.adversary import gan, gan_config
    from fedgan_jax.driver.adversary import AdversaryView

    model, params, _ = _model_for("im2col")
    declared = np.eye(5, 10, dtype=bool) | np.eye(5, 10, 5, dtype=bool)
    view = AdversaryView(
        own_x=jnp.zeros((256, 28, 28, 1)),
        own_y=jnp.zeros(256, jnp.int32),
        own_count=jnp.int32(256),
        declared=jnp.asarray(declared),
        victim=jnp.int32(1),
        adversary=jnp.int32(0),
    )
    for mode in gan_config.MODES:
        trainer = gan.make_gan_trainer(
            image_shape=(28, 28, 1),
            num_classes=10,
            classifier=model,
            mode=mode,
            steps_per_round=10,
        )
        state = trainer.init(jax.random.key(1), view)
        update = jax.jit(trainer.update)
        seconds = _median_seconds(
            lambda u=update, s=state: jax.block_until_ready(u(s, params, view, key)),
            setup.repeats,
        )
        emit(
            {
                "mode": f"generator_{mode}",
                "backend": setup.backend,
                "generator_steps_per_second": 10 / seconds,
                "generated_samples_per_second": 10 * 80 / seconds,
            }
        )


def _attack_classifier_record(setup, key):
    """The attack classifier's training samples per second (2048 samples, one epoch)."""
    import jax
    import jax.numpy as jnp

    from fedgan_jax.adversary import attack

    model, _, _ = _model_for("im2col")
    fit = jax.jit(
        attack.make_classifier_trainer(
            model, (28, 28, 1), epochs=1, batch_size=setup.batch, learning_rate=1e-3
        )
    )
    xs = jax.random.normal(key, (2048, 28, 28, 1))
    ys = jax.random.randint(key, (2048,), 0, 10)
    seconds = _median_seconds(
        lambda: jax.block_until_ready(fit(key, xs, ys, jnp.int32(2048))), setup.repeats
    )
    return {
        "mode": "attack_classifier",
        "backend": setup.backend,
        "samples_per_second": 2048 / seconds,
    }


def _sweep_rounds(engine, config, setup, rounds):
    """Seconds of `rounds` server rounds of one batch (its clients placed, params at M_0)."""
    import jax

    from fedgan_jax.driver import engine as engine_lib
    from fedgan_jax.driver import simulation

    clients = engine_lib.place_clients(setup.clients, engine.mesh)
    keys = simulation.run_keys(setup)
    params = jax.block_until_ready(engine.server.init(keys.server.init))
    tic = time.perf_counter()
    for t in range(1, rounds + 1):
        lr = simulation.learning_rate(config, t)
        params, _ = engine.server.round(params, clients, keys.server.fl, t, lr, None)
    jax.block_until_ready(params)
    return time.perf_counter() - tic


def _sweep_records(emit, runs_list, rounds):
    """The demo federation's rounds for R runs: one vmapped batch against R runs in turn.

    Both reuse one compiled program (built and warmed before timing), as `sweep.py` does;
    the client arrays are dealt beforehand. Only the server round is timed (the adversary's
    generator steps are the same per run either way)."""
    import jax

    from configs import demo
    from fedgan_jax.driver import engine as engine_lib
    from fedgan_jax.driver import experiment, simulation

    base = demo.get_config()
    dataset = experiment.load_data(base)
    for num_runs in runs_list:
        runs = [engine_lib.RunSpec((("seed", s),)) for s in range(num_runs)]
        deals = engine_lib.deal_runs(base, dataset, runs)
        capacity = engine_lib.common_capacity(base, deals)
        variants = [("sweep_sequential", "-", [[r] for r in runs])]
        variants += [("sweep_batched", b, [runs]) for b in ("vmap", "map")]
        for mode, batching, batches in variants:
            config = base.copy_and_resolve_references()
            config.sweep.run_batching = "map" if batching == "-" else batching
            tic = time.perf_counter()
            engine = simulation.build_engine(config, dataset, len(batches[0]))
            setups = [engine_lib.prepare(config, dataset, deals, b, capacity) for b in batches]
            _sweep_rounds(engine, config, setups[0], 1)  # compiles
            compile_s = time.perf_counter() - tic
            seconds = sum(_sweep_rounds(engine, config, s, rounds) for s in setups)
            emit(
                {
                    "mode": mode,
                    "runs": num_runs,
                    "run_batching": batching,
                    "auto_picks": engine_lib.resolve_run_batching("auto"),
                    "clients": config.fl.num_participants,
                    "backend": jax.default_backend(),
                    "seconds_per_run_round": seconds / (num_runs * rounds),
                    "compile_seconds": compile_s,
                }
            )


def _shadow_records(emit, shadows_list, rounds, axes):
    """LiRA's cost: S shadow federations of the demo (bundled MNIST, 5 participants, every
    candidate of the victim's classes IN in S/2; `driver/shadows.py`), `rounds` rounds
    each as one program (`lira.train_shadows`, map and vmap over the shadows), compile
    apart. Reported as shadow federations per hour at the demo's fl.rounds."""
    import jax
    import numpy as np

    from configs import demo
    from fedgan_jax.adversary import lira
    from fedgan_jax.adversary.view import view_of
    from fedgan_jax.driver import engine as engine_lib
    from fedgan_jax.driver import experiment, simulation
    from fedgan_jax.nn import models

    config = demo.get_config()
    dataset = experiment.load_data(config)
    run = engine_lib.RunSpec((("seed", 0),))
    deals = engine_lib.deal_runs(config, dataset, [run])
    setup = engine_lib.prepare(
        config, dataset, deals, [run], engine_lib.common_capacity(config, deals)
    )
    one = jax.tree.map(lambda a: a[0], setup.clients)
    view = view_of(one, setup.declared[0], adversary=config.fl.adversary, victim=config.fl.victim)
    pool_x, pool_y = (np.asarray(a) for a in simulation.candidate_pool(dataset))
    classifier = models.classifier(dataset.spec, config.model.conv_impl)
    fed = engine_lib.federation_of(config, classifier, server_view="none")

    def init(key):
        return models.init_params(classifier, key, np.zeros((1, *dataset.image_shape), np.float32))

    candidate = np.asarray(view.victim_labels)[pool_y]
    for num in shadows_list:
        masks = np.asarray(lira.shadow_masks(jax.random.key(0), len(pool_y), num)) & candidate
        clients = lira.shadow_clients(view, masks, pool_x, pool_y)
        for axis in axes:
            train = lira.make_shadow_trainer(fed, init, rounds=rounds, run_axis=axis)
            tic = time.perf_counter()
            jax.block_until_ready(train(clients, jax.random.key(1)).params)  # compiles
            first = time.perf_counter() - tic
            tic = time.perf_counter()
            jax.block_until_ready(train(clients, jax.random.key(2)).params)
            seconds = time.perf_counter() - tic
            per_round = max(seconds, 1e-9) / (num * rounds)
            emit(
                {
                    "mode": f"lira_shadows_{axis}",
                    "shadows": num,
                    "backend": jax.default_backend(),
                    "seconds_per_shadow_round": per_round,
                    "shadow_federations_per_hour": 3600 / (per_round * config.fl.rounds),
                    "rounds_per_federation": config.fl.rounds,
                    "compile_seconds": first - seconds,
                }
            )


def _torch_records(emit, counts, threads):
    """The PyTorch rows: `torch_baseline.py` in a subprocess, each variant at each count."""
    import subprocess

    python = _TORCH_PYTHON.value
    if not python:
        return
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True)
    if probe.returncode:
        print(f"no PyTorch rows: {python} cannot import torch", flush=True)
        return
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_baseline.py")
    command = [python, script, f"--clients={','.join(map(str, counts))}"]
    command += [f"--threads={threads}", f"--repeats={_REPEATS.value}"]
    command += [f"--records={_RECORDS.value}", f"--batch_size={_BATCH.value}"]
    command += [f"--device={_TORCH_DEVICE.value}"]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            emit(json.loads(line))
    if done.returncode:
        print(f"torch_baseline.py failed: {done.stderr.strip()[-2000:]}", flush=True)


def _ratios(out, counts):
    """engine_seq over python_loop per client count, and engine_seq's last over first."""
    by = {(r["mode"], r.get("clients")): r for r in out["records"]}
    ratios = {}
    for n in counts:
        engine, loop = by.get(("engine_seq", n)), by.get(("python_loop", n))
        if engine and loop:
            ratios[str(n)] = engine["samples_per_second"] / loop["samples_per_second"]
    out["engine_over_python_loop"] = ratios
    torch_best = {}
    for r in out["records"]:
        if r["mode"].startswith("pytorch_") and "samples_per_second" in r:
            n = r["clients"]
            if r["samples_per_second"] > torch_best.get(n, (0, ""))[0]:
                torch_best[n] = (r["samples_per_second"], r["mode"])
    for key, mode in (
        ("engine_over_pytorch", "engine_seq"),
        ("engine_mesh_over_pytorch", "engine_mesh"),
    ):
        ratios = {
            str(n): {"ratio": by[(mode, n)]["samples_per_second"] / best, "pytorch_mode": name}
            for n, (best, name) in torch_best.items()
            if (mode, n) in by
        }
        if ratios or mode == "engine_seq":
            out[key] = ratios
    first, last = by.get(("engine_seq", counts[0])), by.get(("engine_seq", counts[-1]))
    if first and last:
        out["engine_scaling_last_over_first"] = (
            last["samples_per_second"] / first["samples_per_second"]
        )


def _settle_peak(out) -> None:
    """sgemm again at the end; the faster of the two measurements is the peak, and every
    record's fraction of it is restated against that."""
    start = out["sgemm_gflops"]
    out["sgemm_gflops_measured"] = [start, _sgemm_gflops()]
    out["sgemm_gflops"] = max(out["sgemm_gflops_measured"])
    for record in out["records"]:
        if "fraction_of_peak" in record:
            record["fraction_of_peak"] = record["achieved_gflops"] / out["sgemm_gflops"]


def _split_cpu() -> None:
    """One XLA device per core (or ``--cpu_devices``) for the engine_mesh rows: set before
    the backend starts; on accelerators, or without engine_mesh, nothing changes."""
    import jax

    if "engine_mesh" not in _MODES.value or "xla_force_host_platform_device_count" in (
        os.environ.get("XLA_FLAGS", "")
    ):
        return
    count = _CPU_DEVICES.value or os.cpu_count() or 1
    jax.config.update("jax_num_cpu_devices", count)


def main(argv):
    del argv
    _split_cpu()
    import jax

    from fedgan_jax.driver.outputs import cpu_info

    counts = [int(n) for n in _CLIENTS.value]
    out = {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "batch_size": _BATCH.value,
        "records_per_client": _RECORDS.value,
        "repeats": _REPEATS.value,
        "cpu": cpu_info(),
        "records": [],
    }
    out["sgemm_gflops"] = _sgemm_gflops()
    flops = _flops_per_sample(_BATCH.value)
    out["flops_per_sample"] = flops["im2col"]
    setup = _Setup(
        out["backend"], _BATCH.value, _RECORDS.value, _REPEATS.value, flops, out["sgemm_gflops"]
    )
    emit = functools.partial(_emit, out)
    for n in counts:
        _federated_records(setup, emit, n)
    if _GAN.value:
        key = jax.random.key(counts[-1])  # the last client count's key, as earlier runs used
        _generator_records(setup, emit, key)
        emit(_attack_classifier_record(setup, key))
    if _SWEEP_RUNS.value:
        _sweep_records(emit, [int(r) for r in _SWEEP_RUNS.value], _SWEEP_ROUNDS.value)
    if _SHADOWS.value:
        shadows = [int(v) for v in _SHADOWS.value]
        _shadow_records(emit, shadows, _SHADOW_ROUNDS.value, _SHADOW_AXES.value)
    _torch_records(emit, counts, threads=os.cpu_count() or 1)
    if _PROFILE.value:  # where a training step's time goes, layer by layer
        out["layer_profile_ms"] = _layer_profile(_BATCH.value, _REPEATS.value)
        print(json.dumps({"layer_profile_ms": out["layer_profile_ms"]}), flush=True)
    _ratios(out, counts)
    _settle_peak(out)
    document = json.dumps(out, indent=2)
    print(document)
    if _JSON.value:
        from fedgan_jax.core import io

        io.write_text(_JSON.value, document + "\n")


if __name__ == "__main__":
    app.run(main)
