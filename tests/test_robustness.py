"""Runs that survive: kill + resume, faults mid-run, determinism, bad inputs, non-finite values."""

import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fedgan_jax.core import errors, io
from fedgan_jax.driver.experiment import train_and_evaluate
from tests import test_data as files
from tests.conftest import tiny_config
from tests.test_run_smoke import ROOT, TINY, run_launcher

VOLATILE = ("wall_seconds", "phase_seconds", "resumed_from_round")


def _stable(results: dict) -> dict:
    """results.json without the fields that legitimately differ between runs."""
    return {k: v for k, v in results.items() if k not in VOLATILE}


def _assert_same_outputs(dir_a, dir_b):
    a = io.read_json(os.path.join(dir_a, "results.json"))
    b = io.read_json(os.path.join(dir_b, "results.json"))
    assert _stable(a) == _stable(b)
    for npz in ("membership.npz", "snapshots.npz"):
        npz_a = np.load(os.path.join(dir_a, npz))
        npz_b = np.load(os.path.join(dir_b, npz))
        assert sorted(npz_a.files) == sorted(npz_b.files)
        for name in npz_a.files:
            np.testing.assert_array_equal(npz_a[name], npz_b[name], err_msg=name)
    csv_a = open(os.path.join(dir_a, "metrics.csv")).read()
    assert csv_a == open(os.path.join(dir_b, "metrics.csv")).read()


# 6 rounds; the adversary keeps every second global model (part of the checkpointed state)
LONGER = [
    "--config.fl.rounds=6",
    "--config.gan.figure_rounds=(5,)",
    "--config.adversary.snapshot_every=2",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 6-round run."""
    workdir = str(tmp_path_factory.mktemp("ref") / "run")
    run_launcher(workdir, *LONGER)
    return workdir


def test_same_config_and_seed_give_identical_outputs(reference, tmp_path):
    again = str(tmp_path / "again")
    run_launcher(again, *LONGER)
    _assert_same_outputs(reference, again)


def _faulty_launch(fault: str, at: int, workdir: str) -> subprocess.CompletedProcess:
    """The LONGER run with `fault` injected at round `at`'s checkpoint (tests/faults.py)."""
    cmd = [sys.executable, "tests/faults.py", fault, str(at), "--", *TINY, *LONGER]
    cmd.append(f"--workdir={workdir}")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _last_line(proc) -> str:
    return proc.stderr.strip().splitlines()[-1]


def _steps(workdir) -> list[int]:
    """The complete checkpoints (orbax's committed step folders)."""
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def test_sigkill_mid_checkpoint_write_then_resume_ends_like_an_uninterrupted_run(
    reference, tmp_path
):
    """kill -9 while orbax writes a random round's checkpoint: its temporary folder is on
    disk, not renamed; the rerun says it resumes from the round before, and ends like an
    uninterrupted run (outputs bit for bit)."""
    workdir = str(tmp_path / "killed")
    kill_at = random.Random(time.time_ns()).randint(2, 5)  # a random round
    proc = _faulty_launch("kill", kill_at, workdir)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    assert any(n.startswith(f"{kill_at}.orbax-checkpoint-tmp") for n in names), names
    assert _steps(workdir)[-1] == kill_at - 1
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    resumed = run_launcher(workdir, *LONGER)  # takes over the dead run's lock
    assert resumed.stdout.splitlines()[0] == f"resuming {workdir} from round {kill_at - 1}"
    result = io.read_json(os.path.join(workdir, "results.json"))
    assert result["resumed_from_round"] == kill_at - 1
    _assert_same_outputs(reference, workdir)


def test_disk_full_then_read_only_mid_run_fail_clearly_then_resume(reference, tmp_path):
    """Disk full in round 3's checkpoint, then (rerun) the workdir read-only from round 5:
    each stops with one line (exit 1) naming the round a rerun resumes from, keeps the
    checkpoints before it and releases the lock; the third launch finishes the run."""
    workdir = str(tmp_path / "faults")
    full = _faulty_launch("enospc", 3, workdir)
    line = _last_line(full)
    assert full.returncode == 1, full.stderr[-2000:]
    assert line.startswith(f"error: {workdir}: cannot write ") and "No space left on device" in line
    assert line.endswith("then rerun the same command to resume from round 2")
    assert _steps(workdir) == [1, 2] and not os.path.exists(os.path.join(workdir, "results.json"))
    assert not os.path.exists(os.path.join(workdir, ".lock"))
    read_only = _faulty_launch("readonly", 5, workdir)
    assert read_only.returncode == 1, read_only.stderr[-2000:]
    assert read_only.stdout.splitlines()[0] == f"resuming {workdir} from round 2"
    line = _last_line(read_only)
    assert "Read-only file system" in line and line.endswith("resume from round 4"), line
    assert _steps(workdir) == [3, 4]  # checkpoint.keep=2
    resumed = run_launcher(workdir, *LONGER)
    assert resumed.stdout.splitlines()[0] == f"resuming {workdir} from round 4"
    _assert_same_outputs(reference, workdir)


def test_ctrl_c_exits_130_naming_the_round_to_resume_from(tmp_path):
    workdir = str(tmp_path / "interrupted")
    cmd = [sys.executable, "experiments/run.py", *TINY, *LONGER, f"--workdir={workdir}"]
    # Ctrl-C as a terminal sends it: a child that inherits SIGINT ignored (something in
    # a full suite leaves it so in pytest's process) never installs Python's handler
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    checkpoints = os.path.join(workdir, "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(checkpoints) and _steps(workdir):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    line = stderr.strip().splitlines()[-1]
    pattern = (
        r"error: interrupted at round (\d+); rerun the same command to resume from round (\d+)"
    )
    match = re.fullmatch(pattern, line)
    assert match, line
    saved = _steps(workdir)[-1]
    assert int(match[2]) == saved and int(match[1]) in (saved, saved + 1), (line, saved)
    assert not os.path.exists(os.path.join(workdir, ".lock"))


def test_an_unfinished_checkpoint_is_ignored(reference, tmp_path):
    """A save cut short leaves only a temporary folder: resume takes the last complete one."""
    import shutil

    workdir = str(tmp_path / "partial")
    shutil.copytree(reference, workdir)
    os.remove(os.path.join(workdir, "results.json"))
    ckpt = os.path.join(workdir, "checkpoints")
    last = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
    # What orbax leaves when killed mid-write: the step's temporary folder, no commit.
    shutil.copytree(
        os.path.join(ckpt, str(last)), os.path.join(ckpt, f"{last + 1}.orbax-checkpoint-tmp-1")
    )
    with open(os.path.join(ckpt, f"{last + 1}.orbax-checkpoint-tmp-1", "junk"), "w") as f:
        f.write("half written")
    run_launcher(workdir, *LONGER)
    assert io.read_json(os.path.join(workdir, "results.json"))["resumed_from_round"] == last
    _assert_same_outputs(reference, workdir)


def test_a_different_config_in_the_workdir_is_refused(reference, tmp_path):
    import shutil

    workdir = str(tmp_path / "other")
    shutil.copytree(reference, workdir)
    proc = run_launcher(workdir, *LONGER, "--config.fl.learning_rate=0.02", check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {workdir} holds another experiment")
    assert "fl.learning_rate: 0.05 there, 0.02 here" in line


# --------------------------------------------------------------------------- bad inputs


def _files_dir(tmp_path, mutate=None):
    folder = tmp_path / "files"
    folder.mkdir()
    files.write_mnist(str(folder))
    if mutate:
        mutate(str(folder))
    return str(folder)


def _no_records(folder):  # well-formed IDX files whose headers announce 0 items
    files.put(folder, files.TRAIN_IMAGES, files.idx_bytes(np.zeros((0, 28, 28))))
    files.put(folder, files.TRAIN_LABELS, files.idx_bytes(np.zeros((0,))))


def _truncated(folder):
    path = os.path.join(folder, files.TRAIN_IMAGES)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-100])


def _wrong_magic(folder):
    x = files.mnist_arrays()[0]
    files.put(folder, files.TRAIN_IMAGES, files.idx_bytes(x, magic=0x00000801))


def _label_out_of_range(folder):
    files.put(folder, files.TEST_LABELS, files.idx_bytes(np.array([9, 12, 6])))


def _wrong_size(folder):
    files.put(folder, files.TEST_IMAGES, files.idx_bytes(np.zeros((3, 27, 27))))


def _classes_missing(folder):
    files.put(folder, files.TRAIN_LABELS, files.idx_bytes(np.array([3, 1, 4, 1, 5])))


# (config overrides, expected message fragment); each must fail before any compute.
BAD_CONFIGS = [
    ({"fl.rounds": 0}, "fl.rounds=0: must be an integer >= 1"),
    ({"fl.rounds": -5}, "fl.rounds=-5: must be an integer >= 1"),
    ({"fl.local_epochs": 0}, "fl.local_epochs=0: must be an integer >= 1"),
    ({"fl.local_steps": -1}, "fl.local_steps=-1: must be an integer >= 0"),
    (
        {"fl.local_steps": 5, "fl.dpsgd_clip": 1.0},
        "fl.local_steps=5: DP-SGD's accounting counts full epochs: use 0",
    ),
    ({"fl.learning_rate": 0.0}, "fl.learning_rate=0.0: must lie in (0.0, inf]"),
    ({"fl.learning_rate": -0.1}, "fl.learning_rate=-0.1: must lie in (0.0, inf]"),
    ({"gan.learning_rate": float("nan")}, "gan.learning_rate=nan: must be a finite number"),
    ({"attack.learning_rate": 0.0}, "attack.learning_rate=0.0: must lie in (0.0, inf]"),
    ({"fl.batch_size": 0}, "fl.batch_size=0: must be an integer >= 1"),
    ({"attack.batch_size": -1}, "attack.batch_size=-1: must be an integer >= 1"),
    ({"fl.victim_num_labels": 10}, "fl.victim_num_labels=10: must be an integer in [1, 9]"),
    ({"fl.victim_num_labels": 0}, "fl.victim_num_labels=0: must be an integer in [1, 9]"),
    ({"fl.victim_num_labels": 7}, "the other 4 participants would share 3 labels"),
    ({"data.dataset": "svhn"}, "data.dataset='svhn': allowed: mnist, cifar10, fashion_mnist"),
    ({"data.source": "web"}, "data.source='web': allowed: tfds, bundled, files"),
    ({"data.dataset": "cifar10"}, "data.source='bundled': holds MNIST only"),
    ({"attack.attacks": ("gan", "shadow")}, "unknown entry 'shadow'"),
    ({"attack.protocols": ("lenient",)}, "unknown entry 'lenient'"),
    ({"attack.protocols": ()}, "attack.protocols=(): must name at least one"),
    ({"gan.mode": "wgan"}, "gan.mode='wgan': allowed: paper, dafl, adversarial, prior"),
    ({"gan.trigger": "loss"}, "gan.trigger='loss': allowed: accuracy, own_accuracy, round"),
    ({"fl.victim": 0}, "fl.victim=0 equals fl.adversary"),
    ({"fl.victim": 7}, "fl.victim=7: must be an integer in [0, 4]"),
    ({"fl.num_participants": 2}, "fl.num_participants=2: must be an integer >= 3"),
    ({"fl.num_participants": 10}, "the other 9 participants would share 8 labels"),
    ({"fl.client_fraction": 0.0}, "fl.client_fraction=0.0: must lie in (0.0, 1.0]"),
    ({"fl.mesh_devices": 4}, "fl.mesh_devices=4: only 1 cpu device(s) are visible"),
    ({"fl.weighting": "median"}, "fl.weighting='median': allowed: examples, uniform"),
    ({"fl.noise_multiplier": 1.0}, "fl.noise_multiplier=1.0: needs fl.clip_norm > 0"),
    (
        {"fl.noise_multiplier": 1.0, "fl.clip_norm": 1.0},
        "fl.noise_multiplier=1.0: needs fl.weighting=uniform",
    ),
    (
        {"data.source": "files", "data.data_dir": "/no/such/dir"},
        "data.data_dir='/no/such/dir': no such directory",
    ),
    ({"data.source": "files"}, "data.data_dir='': data.source=files needs the folder"),
    ({"gan.channels": 6}, "gan.channels=6: must be a multiple of 4"),
    ({"gan.mode": "adversarial", "gan.loss.realism": 0.3}, "use one of them"),
    ({"adversary.snapshot_every": 5}, "adversary.snapshot_every=5: must be an integer in [0, 3]"),
    ({"sweep.seeds": (0, 0)}, "sweep.seeds=(0, 0): has a duplicate entry"),
    ({"gan.figure_rounds": (0,)}, "gan.figure_rounds=(0,): must hold rounds (integers >= 1)"),
    (
        {"gan.trigger": "round", "gan.trigger_round": 9},
        "gan.trigger_round=9: must be <= fl.rounds=3",
    ),
    ({"seed": 2**32}, "seed=4294967296: must be < 2**32: jax.random.key keeps 32 bits"),
    ({"sweep.seeds": (0, 2**32)}, "seeds must be integers in [0, 2**32)"),
    ({"data.data_dir": "/data/mnist"}, "data.data_dir='/data/mnist': data.source=bundled ignores"),
    ({"data.source": "tfds", "data.test_fraction": 0.3}, "data.source=tfds ignores it"),
    (
        {"fl.client_fraction": 0.1},
        "fl.client_fraction=0.1 of fl.num_participants=5 asks for 0.5 clients a round, "
        "trains 1 (a fraction of 0.2); set fl.client_fraction=0.2 to run that",
    ),
    (
        {"fl.batch_size": 100000, "fl.dpsgd_clip": 1.0},
        "fl.batch_size=100000: larger than the largest client (80 records) under DP-SGD",
    ),
    (
        {"gan.samples_per_class": 10**9},
        "the largest item is D_gen: 1 run(s) x gan.samples_per_class",
    ),
    ({"eval.batch_size": 10**9}, "the largest item is evaluation: the 1400 candidate records"),
    (
        {"adversary.snapshot_every": 1, "fl.rounds": 10**7},
        "the largest item is snapshots: 1 run(s) x 10000000 global models",
    ),
]

BAD_FILES = [
    (_no_records, f"{files.TRAIN_IMAGES}: holds no records"),
    (_truncated, f"{files.TRAIN_IMAGES}: truncated or padded IDX file"),
    (_wrong_magic, f"{files.TRAIN_IMAGES}: wrong magic number 0x00000801, expected 0x00000803"),
    (_label_out_of_range, f"{files.TEST_LABELS}: label 12 out of range [0, 9]"),
    (_wrong_size, f"{files.TEST_IMAGES}: images are (27, 27), expected (28, 28)"),
    (_classes_missing, "the training split lacks class(es) 0, 2, 6, 7, 8, 9 of 0-9"),
]


def _apply(config, overrides):
    for field, value in overrides.items():
        *path, name = field.split(".")
        node = config
        for part in path:
            node = node[part]
        node[name] = value


@pytest.mark.parametrize(
    "overrides, message", BAD_CONFIGS, ids=[",".join(o) for o, _ in BAD_CONFIGS]
)
def test_bad_config_is_a_clear_error_and_writes_nothing(tmp_path, overrides, message):
    config = tiny_config()
    _apply(config, overrides)
    workdir = str(tmp_path / "run")
    with pytest.raises(errors.ConfigError) as info:
        train_and_evaluate(config, workdir, progress=False)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not os.path.exists(workdir)  # not even a folder: nothing ran


@pytest.mark.parametrize("mutate, message", BAD_FILES, ids=[m.__name__ for m, _ in BAD_FILES])
def test_bad_data_file_is_a_clear_error_and_writes_nothing(tmp_path, mutate, message):
    config = tiny_config()
    config.data.source = "files"
    config.data.data_dir = _files_dir(tmp_path, mutate)
    config.data.max_train_per_class = 0
    workdir = str(tmp_path / "run")
    with pytest.raises(errors.DataError) as info:
        train_and_evaluate(config, workdir, progress=False)
    assert message in str(info.value)
    assert not os.path.exists(os.path.join(workdir, "results.json"))


def test_bad_data_file_through_the_launcher(tmp_path):
    data_dir = _files_dir(tmp_path, _wrong_magic)
    workdir = str(tmp_path / "run")
    proc = run_launcher(
        workdir,
        "--config.data.source=files",
        f"--config.data.data_dir={data_dir}",
        "--config.data.max_train_per_class=0",
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "wrong magic number" in proc.stderr
    assert not os.path.exists(os.path.join(workdir, "results.json"))


def test_non_finite_training_stops_with_the_round(tmp_path):
    workdir = str(tmp_path / "run")
    proc = run_launcher(workdir, "--config.fl.learning_rate=1e30", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: round 1: non-finite values in a client's local training, client")
    assert not os.path.exists(os.path.join(workdir, "results.json"))


def markdown_table() -> str:
    """The bad-input table of docs/usage.md: every case above, with the message it really gets.

    python -c "from tests.test_robustness import markdown_table; print(markdown_table())"
    """
    import tempfile

    rows = ["| input | message (after `error: `) |", "|---|---|"]
    for overrides, _ in BAD_CONFIGS:
        config = tiny_config()
        _apply(config, overrides)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                train_and_evaluate(config, os.path.join(tmp, "run"), progress=False)
                message = "(no error)"
            except errors.FedGanError as e:
                message = str(e)
        shown = ", ".join(f"`{k}={v!r}`" for k, v in overrides.items())
        rows.append(f"| {shown} | {message} |")
    for mutate, _ in BAD_FILES:
        with tempfile.TemporaryDirectory() as tmp:
            config = tiny_config()
            config.data.source = "files"
            config.data.max_train_per_class = 0
            folder = os.path.join(tmp, "files")
            os.mkdir(folder)
            files.write_mnist(folder)
            mutate(folder)
            config.data.data_dir = folder
            try:
                train_and_evaluate(config, os.path.join(tmp, "run"), progress=False)
                message = "(no error)"
            except errors.FedGanError as e:
                message = str(e).replace(tmp, "<dir>")
        rows.append(f"| MNIST files: {mutate.__name__.strip('_').replace('_', ' ')} | {message} |")
    rows.append(
        "| `fl.learning_rate=1e30` (a run) | round 1: non-finite values in a client's "
        "local training, client 0 (run k2_seed0); the run stops here: ... |"
    )
    return "\n".join(rows + _cli_rows() + FAULT_ROWS)


def _cli_rows() -> list[str]:
    """The launchers' cases of tests/test_cli.py (TINY's flags left out), run for real."""
    import tempfile

    from tests.test_cli import CLI_CASES, run_case

    rows = []
    for make_args, _, _ in CLI_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            line, status, proc = run_case(make_args, tmp)
            shown = " ".join(a.replace(tmp, "<tmp>") for a in proc.args[1:] if a not in TINY)
        if shown.startswith("tests/faults.py readonly 0 -- "):  # its fault, in words
            shown = shown.replace("tests/faults.py readonly 0 -- ", "experiments/run.py ")
            shown += "` (a read-only file system) `"
        status = "" if status == 2 else f" (exit {status})"
        rows.append(f"| `{shown}`{status} | {line.removeprefix('error: ')} |".replace(" ``", ""))
    return rows


# What the fault tests above check, in the words they check (N, M: rounds; exit status).
FAULT_ROWS = [
    "| a second launch on a busy workdir (run.py or sweep.py) | workdir <dir> is busy: pid P "
    "on HOST has held it since START (COMMAND); wait for that run to end or stop it |",
    "| Ctrl-C during a run (exit 130) | interrupted at round N; rerun the same command to "
    "resume from round M |",
    "| disk full mid-run (exit 1) | <dir>: cannot write <file> (No space left on device); the "
    "run stopped: make room or make the workdir writable, then rerun the same command to "
    "resume from round M |",
    "| workdir read-only mid-run (exit 1) | <dir>: cannot write <file> (Read-only file "
    "system); the run stopped: ... resume from round M |",
    "| kill -9 mid-checkpoint-write | (no line: the rerun prints `resuming <dir> from round "
    "M` first and ends like an uninterrupted run) |",
]


def test_first_ctrl_c_waits_for_the_round_second_stops_at_once():
    """`_ctrl_c_between_rounds`: the first SIGINT only sets the flag the round checks at
    its end; the second raises; the default handler is back afterwards."""
    from types import SimpleNamespace

    from fedgan_jax.driver.experiment import _ctrl_c_between_rounds

    on_round = SimpleNamespace(stop_requested=False)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as Python starts
    with pytest.raises(KeyboardInterrupt):
        with _ctrl_c_between_rounds(on_round):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs: no exception, the flag is set
            assert on_round.stop_requested
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, previous)


def test_a_batch_wider_than_every_client_trains_on_one_short_batch(tmp_path, caplog):
    """The demo shrunk below a local batch runs (as a DataLoader keeps its last short
    batch) and says so once, instead of refusing."""
    config = tiny_config()
    config.fl.batch_size = 1000  # the largest client holds 80 records
    with caplog.at_level("WARNING"):
        results = train_and_evaluate(config, str(tmp_path / "run"), progress=False)
    assert "fl.batch_size=1000 is larger than the largest client (80 records)" in caplog.text
    assert results["final_main_task_accuracy"] > 0.2  # it learnt from one step a round
