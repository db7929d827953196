"""Several processes as one federation (fedgan_jax.driver.distributed), on this machine's CPU.

Two processes joined through `jax.distributed` (gloo collectives), each with one CPU
device, shard the federation's clients over the two devices; the run must equal, file for
file, one process with two forced CPU devices and the same mesh. Only process 0 writes.
"""

import os
import socket
import subprocess
import sys

from experiments.compare_runs import compare
from tests.test_run_smoke import ROOT, TINY

SHORT = [
    *TINY,
    "--config.fl.rounds=2",
    "--config.gan.trigger_round=1",
    "--config.gan.figure_rounds=(2,)",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(workdir, *extra, env=None):
    cmd = [sys.executable, "experiments/run.py", *SHORT, f"--workdir={workdir}", *extra]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_two_processes_equal_one_process_with_two_devices(tmp_path):
    port = _free_port()
    mesh = "--config.fl.mesh_devices=-1"
    joined = [
        _launch(
            tmp_path / "two",
            mesh,
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={p}",
        )
        for p in (0, 1)
    ]
    outs = [proc.communicate(timeout=900) for proc in joined]
    for proc, (_, err) in zip(joined, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    single = _launch(tmp_path / "one", "--config.fl.mesh_devices=2", env=env)
    _, err = single.communicate(timeout=900)
    assert single.returncode == 0, err[-3000:]
    assert compare(str(tmp_path / "one"), str(tmp_path / "two")) == 0  # bit for bit
    assert f"outputs in {tmp_path / 'two'}" in outs[0][0]  # process 0 reports and writes
    assert "outputs in" not in outs[1][0] and "round 1/2" not in outs[1][0]


def test_process_flags_go_together():
    proc = _launch("/nonexistent/never", "--num_processes=2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1] == (
        "error: --coordinator_address, --num_processes and --process_id go together "
        "(or none of them, to read them from the cluster's environment)"
    )
