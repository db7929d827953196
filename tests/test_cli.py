"""The launchers as a user meets them: one line per mistake, exit statuses, help, the
workdir lock, file modes, and report.py on workdirs that hold no results."""

import json
import os
import socket
import subprocess
import sys

import pytest

from fedgan_jax.core import errors, io
from fedgan_jax.driver.experiment import train_and_evaluate
from fedgan_jax.driver.sweep import run_sweep
from fedgan_jax.driver.workdir import LOCK_FILE, hold
from tests.conftest import tiny_config
from tests.test_run_smoke import ROOT, TINY


def launch(script: str, *args: str) -> subprocess.CompletedProcess:
    """experiments/`script`, or tests/faults.py (its args first) for an injected fault."""
    cmd = [sys.executable, script if "/" in script else f"experiments/{script}", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _a_file(tmp):
    path = os.path.join(tmp, "a_file")
    open(path, "w").close()
    return path


def _read_only(tmp):
    workdir = os.path.join(tmp, "read_only")
    os.mkdir(workdir)
    return workdir


def _unfinished(tmp):
    workdir = os.path.join(tmp, "unfinished")
    os.makedirs(os.path.join(workdir, "checkpoints", "2"))
    io.write_json(os.path.join(workdir, "config.json"), {"fingerprint": "x"})
    return workdir


def _sweep(tmp):
    workdir = os.path.join(tmp, "sweep")
    io.write_json(os.path.join(workdir, "sweep_config.json"), {})
    return workdir


# (what a user types, given a scratch folder; the one line expected after `error: `;
# the exit status). Each must stop before any compute.
CLI_CASES = [
    (
        lambda tmp: ("run.py", *TINY, "--config.fl.roundz=3", f"--workdir={tmp}/run"),
        "--config.fl.roundz=3: no config field fl.roundz; did you mean fl.rounds? "
        "(every field is in configs/default.py)",
        2,
    ),
    (
        lambda tmp: ("run.py", *TINY, "--config.fll.rounds=3", f"--workdir={tmp}/run"),
        "--config.fll.rounds=3: no config field fll; did you mean fl? "
        "(every field is in configs/default.py)",
        2,
    ),
    (
        lambda tmp: ("run.py", *TINY, "--config.fl.rounds=ten", f"--workdir={tmp}/run"),
        "--config.fl.rounds=ten: invalid literal for int() with base 10: 'ten'",
        2,
    ),
    (
        lambda tmp: ("run.py", "--config=configs/nope.py", f"--workdir={tmp}/run"),
        "--config=configs/nope.py: [Errno 2] No such file or directory: 'configs/nope.py'",
        2,
    ),
    (
        lambda tmp: ("run.py", "--config=configs/demo.py:fast", f"--workdir={tmp}/run"),
        "--config=configs/demo.py:fast: configs/demo.py's get_config() takes no argument; "
        "drop ':fast'",
        2,
    ),
    (
        lambda tmp: ("sweep.py", *TINY, "--config.sweep.label_counts=(0,)", f"--workdir={tmp}/run"),
        "sweep.label_counts=(0,): entry 0 fails: k=0: must be an integer in [1, 9]",
        2,
    ),
    (lambda tmp: ("run.py", *TINY), "--workdir is required (see --help)", 2),
    (
        lambda tmp: ("run.py", *TINY, f"--workdir={_a_file(tmp)}"),
        "workdir <tmp>/a_file is a file, not a folder: choose another --workdir",
        2,
    ),
    (
        lambda tmp: ("sweep.py", *TINY, f"--workdir={_a_file(tmp)}/sweep"),
        "workdir <tmp>/a_file/sweep: <tmp>/a_file is a file, so no folder can be made",
        2,
    ),
    (
        lambda tmp: (
            "tests/faults.py",
            "readonly",
            "0",
            "--",
            *TINY,
            f"--workdir={_read_only(tmp)}",
        ),
        "workdir <tmp>/read_only is not writable: Read-only file system; choose another --workdir",
        2,
    ),
    (
        lambda tmp: ("report.py", f"--workdir={_unfinished(tmp)}"),
        "<tmp>/unfinished holds an unfinished run (last checkpoint: round 2): rerun its "
        "experiments/run.py command to finish it, then report",
        2,
    ),
    (
        lambda tmp: ("report.py", f"--workdir={_sweep(tmp)}"),
        "<tmp>/sweep is a sweep: its tables are in <tmp>/sweep/summary.md; for one of its "
        "runs give --workdir=<tmp>/sweep/runs/<name>",
        2,
    ),
    (
        lambda tmp: ("report.py", f"--workdir={tmp}/nothing"),
        "<tmp>/nothing: no such folder (not a run's workdir)",
        2,
    ),
    (
        lambda tmp: ("report.py", f"--sweep={tmp}/nothing"),
        "<tmp>/nothing: no summary.csv in it (not a finished sweep)",
        2,
    ),
]


def run_case(make_args, tmp: str) -> tuple[str, int, subprocess.CompletedProcess]:
    """The case's last stderr line (scratch folder shown as <tmp>), exit status, process."""
    script, *args = make_args(tmp)
    proc = launch(script, *args)
    lines = proc.stderr.strip().splitlines()
    return (lines[-1].replace(tmp, "<tmp>") if lines else ""), proc.returncode, proc


@pytest.mark.parametrize(
    "make_args, message, status", CLI_CASES, ids=[m[:40] for _, m, _ in CLI_CASES]
)
def test_everyday_mistake_is_one_line_and_an_exit_status(tmp_path, make_args, message, status):
    line, code, proc = run_case(make_args, str(tmp_path))
    assert line == f"error: {message}", proc.stderr[-2000:]
    assert code == status
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "run")


def test_help_exits_0_and_lists_the_config_sections():
    proc = launch("run.py", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "configs/default.py" in proc.stdout
    for section in ("data", "fl", "model", "eval", "gan", "attack", "adversary", "sweep"):
        assert f"\n  {section}: " in proc.stdout, section
    assert "--workdir" in proc.stdout and "--verbose" in proc.stdout


# --------------------------------------------------------------------------- the lock


def test_a_busy_workdir_is_refused_naming_its_holder(tmp_path):
    workdir = str(tmp_path / "run")
    with hold(workdir):
        for driver in (train_and_evaluate, run_sweep):
            with pytest.raises(errors.WorkdirError) as info:
                driver(tiny_config(), workdir, progress=False)
            message = str(info.value)
            assert message.startswith(f"workdir {workdir} is busy: pid {os.getpid()} on ")
            assert socket.gethostname() in message and "\n" not in message
        assert os.listdir(workdir) == [LOCK_FILE]  # nothing else claimed
    assert not os.path.exists(os.path.join(workdir, LOCK_FILE))  # released


def test_a_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: its lock is stale
    workdir = tmp_path / "run"
    workdir.mkdir()
    stale = {"pid": dead.pid, "host": socket.gethostname(), "started": "then", "command": "x"}
    (workdir / LOCK_FILE).write_text(json.dumps(stale))
    with hold(str(workdir)):
        record = json.loads((workdir / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(errors.WorkdirError, match=f"pid {os.getpid()}"):
            with hold(str(workdir)):  # held now: a second holder is refused
                pass
    assert not (workdir / LOCK_FILE).exists()


def test_the_lock_is_released_after_an_error(tmp_path):
    workdir = str(tmp_path / "run")
    with pytest.raises(RuntimeError), hold(workdir):
        raise RuntimeError("a run that failed")
    with hold(workdir):  # free again
        pass


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        io.write_json(str(tmp_path / "results.json"), {"a": 1})
        io.write_text(str(tmp_path / "summary.md"), "x")
    finally:
        os.umask(old)
    for name in ("results.json", "summary.md"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == mode, name
    assert sorted(os.listdir(tmp_path)) == ["results.json", "summary.md"]  # no temporaries
