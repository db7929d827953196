"""The client axis sharded over 8 (forced CPU) devices gives the unsharded round's params.

XLA_FLAGS must be set before JAX starts, so the check runs in a fresh subprocess.
"""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, chex
    from jax.sharding import NamedSharding, PartitionSpec as P
    from fedgan_jax.federation import fedavg as federated
    from fedgan_jax.nn import models
    from fedgan_jax.data.partition import ClientData
    from fedgan_jax.driver.engine import make_mesh

    assert jax.device_count() == 8, jax.devices()
    model = models.classifier("mnist")
    apply = lambda p, x: model.apply({"params": p}, x)
    params = models.init_params(model, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    update = federated.make_client_update(apply, local_epochs=1, batch_size=8)
    mesh = make_mesh(8)
    for n, per_round, chunk in ((8, None, 1), (5, None, 0), (10, 6, 1)):
        counts = np.arange(n) % 3 * 4 + 8  # unequal: 8, 12, 16, ...
        x = np.asarray(jax.random.normal(jax.random.key(n), (n, 16, 28, 28, 1)))
        y = np.asarray(jax.random.randint(jax.random.key(n + 1), (n, 16), 0, 10), np.int32)
        clients = ClientData(x=jnp.asarray(x), y=jnp.asarray(y), counts=jnp.asarray(counts))
        plain = jax.jit(federated.make_round(update, num_clients=n, clients_per_round=per_round,
                                             client_chunk=chunk))
        sharded = jax.jit(federated.make_round(update, num_clients=n, clients_per_round=per_round,
                                               client_chunk=chunk, mesh=mesh))
        if n % 8 == 0:  # the data itself split over the devices
            spec = NamedSharding(mesh, P("clients"))
            clients = jax.tree.map(lambda a: jax.device_put(a, spec), clients)
        key = jax.random.key(3)
        a, ma = plain(params, clients, key, 0.05)
        b, mb = sharded(params, clients, key, 0.05)
        chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ma["client"], mb["client"])
        np.testing.assert_allclose(ma["loss"], mb["loss"], rtol=1e-5)
        print("ok", n, per_round, chunk, flush=True)
    """
)


def _on_8_devices(args):
    """Runs `args` in a process that sees 8 forced CPU devices (set before JAX starts)."""
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_sharded_round_matches_unsharded_on_8_devices():
    proc = _on_8_devices([sys.executable, "-c", SCRIPT])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("ok") == 3


def test_launcher_runs_sharded_end_to_end(tmp_path):
    """--config.fl.mesh_devices=8 through the whole pipeline, and a mesh too large is refused."""
    from tests.test_run_smoke import TINY

    base = [sys.executable, "experiments/run.py", *TINY]
    ok = _on_8_devices([*base, f"--workdir={tmp_path / 'a'}", "--config.fl.mesh_devices=8"])
    assert ok.returncode == 0, ok.stderr[-4000:]
    assert os.path.exists(tmp_path / "a" / "results.json")
    bad = _on_8_devices([*base, f"--workdir={tmp_path / 'b'}", "--config.fl.mesh_devices=16"])
    assert bad.returncode == 2
    assert "fl.mesh_devices=16: only 8 cpu device(s) are visible" in bad.stderr
