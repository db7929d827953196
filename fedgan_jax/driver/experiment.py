"""`train_and_evaluate(config, workdir)`: one experiment, resumable, with every output.

Writes into the workdir: ``config.json`` (the resolved config, which guards against
mixing experiments), ``checkpoints/`` (orbax), ``results.json``, ``metrics.csv`` (per
round), ``membership.npz`` (ground truth and per-record scores, to recompute every metric)
and the figures (`outputs.py`). `run_batch` does the same for a batch of runs that share
one compiled program (a sweep's runs, vmapped over the run axis).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm import tqdm

from fedgan_jax.core.errors import FedGanError, Interrupted, StorageError, WorkdirError
from fedgan_jax.core.types import Config
from fedgan_jax.data import datasets as data
from fedgan_jax.driver import collusion, config_lib, distributed, outputs, preflight, shadows
from fedgan_jax.driver.adversary import adversary_view
from fedgan_jax.driver.checkpointing import CONFIG_FILE, Checkpointer, claim_workdir
from fedgan_jax.driver.engine import (
    RunSpec,
    Setup,
    common_capacity,
    deal_runs,
    place_clients,
    prepare,
    run_of,
)
from fedgan_jax.driver.simulation import (
    Engine,
    attack_phase,
    build_engine,
    federate,
    initial_state,
    run_keys,
)
from fedgan_jax.driver.state import RunState, nbytes
from fedgan_jax.driver.workdir import check_usable, hold


def load_data(config: Config) -> data.Dataset:
    """The dataset `config.data` names, from its source."""
    d = config.data
    return data.load_dataset(
        d.dataset,
        d.source,
        d.data_dir,
        split_seed=d.split_seed,
        test_fraction=d.test_fraction,
        max_train_per_class=d.max_train_per_class,
        download=d.download,
    )


def train_and_evaluate(config: Config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the experiment `config` into `workdir`; returns results.json.

    Every check comes first (the config, the workdir, the data, the memory it needs); only
    then is the workdir created, locked (`workdir.hold`: one launch at a time) and claimed.
    """
    config_lib.validate(config)
    config = config_lib.resolve(config)  # derived fields adapted (e.g. figure rounds)
    if distributed.is_writer():
        check_usable(workdir)
    dataset = load_data(config)
    run = run_of(config)
    deals = deal_runs(config, dataset, [run])
    programs = build_engine(config, dataset, num_runs=1)
    params = preflight.param_bytes(programs)
    preflight.check_run(config, dataset, deals, num_runs=1, param_bytes=params)
    with hold(workdir) if distributed.is_writer() else contextlib.nullcontext():
        return run_batch(
            config,
            dataset,
            [run],
            [workdir],
            engine=programs,
            deals=deals,
            capacity=common_capacity(config, deals),
            checkpoint_dir=os.path.join(workdir, "checkpoints"),
            progress=progress,
        )[0]


class _Progress:
    """One line per round (and a bar on a terminal), then a checkpoint when due."""

    def __init__(
        self,
        config: Config,
        runs: Sequence[RunSpec],
        ckpt: Checkpointer,
        start: int,
        progress: bool,
    ):
        self.rounds, self.ckpt, self.progress = config.fl.rounds, ckpt, progress
        self.done = int(start)  # the last round finished
        self.stop_requested = False
        names = ", ".join(r.name for r in runs)
        self.bar = tqdm(
            total=self.rounds,
            initial=start,
            disable=not progress,
            desc=f"federation [{names}]",
            unit="round",
            dynamic_ncols=True,
        )

    def __call__(self, state: RunState, seconds: float) -> None:
        t = state.round
        acc = np.asarray(state.log.accuracy[:, t - 1])
        started = np.asarray(state.adversary.gan_start)
        off = int((started == 0).sum())
        generator = "on" if not off else ("off" if len(started) == 1 else f"off in {off} runs")
        line = (
            f"round {t}/{self.rounds}: main-task accuracy "
            f"{np.array2string(acc, precision=4)}, generator {generator}, {seconds:.2f}s"
        )
        if self.progress:
            tqdm.write(line)
        else:
            logging.info(line)
        self.bar.set_postfix(acc=f"{acc.mean():.4f}", refresh=False)
        self.bar.update(1)
        self.ckpt.maybe_save(state)
        self.done = int(t)  # a round interrupted in its save is redone
        if self.stop_requested:  # a first Ctrl-C during the round (`_ctrl_c_between_rounds`)
            raise KeyboardInterrupt


def run_batch(
    config: Config,
    dataset: data.Dataset,
    runs: Sequence[RunSpec],
    workdirs: Sequence[str],
    *,
    engine: Engine,
    deals: dict,
    capacity: int,
    checkpoint_dir: str,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Runs `runs` as one computation (engine.num_runs of them), each into its workdir.

    Ctrl-C becomes `Interrupted`, a write the workdir refuses (disk full, read-only)
    `StorageError`, each naming the round a rerun of the same command resumes from.
    """
    tic = time.perf_counter()
    writer = distributed.is_writer()  # several processes: only process 0 writes
    progress = progress and writer
    for run, workdir in zip(runs, workdirs, strict=True):
        if writer:
            claim_workdir(workdir, run.apply(config), resolved=engine.resolved)
    setup = prepare(config, dataset, deals, runs, capacity)
    clients, view, keys, state, memory = _start(engine, config, setup)
    where = workdirs[0] if len(runs) == 1 else checkpoint_dir
    ckpt, state, resumed_from = _resume(config, checkpoint_dir, state, where, progress)
    on_round = _Progress(config, runs, ckpt, state.round, progress)
    with _stopping(on_round, where):
        test = (jnp.asarray(dataset.test_x), jnp.asarray(dataset.test_y))
        federation_tic = time.perf_counter()
        try:  # on an error, the bar and the checkpointer close before the message is printed
            with _ctrl_c_between_rounds(on_round):
                state = federate(
                    engine,
                    config,
                    setup,
                    state,
                    clients=clients,
                    view=view,
                    keys=keys,
                    test=test,
                    on_round=on_round,
                )
            ckpt.maybe_save(state)  # the last round, if `every` skipped it
        finally:
            on_round.bar.close()
            ckpt.close()
        timings = {"federation": time.perf_counter() - federation_tic}
        attack_tic = time.perf_counter()
        if progress:
            tqdm.write(attack_notice(config, len(runs)))
        out = attack_phase(engine, config, setup, state, view=view, keys=keys)
        timings |= {"attack": time.perf_counter() - attack_tic, "runs_in_batch": len(runs)}
        if progress:
            tqdm.write(f"attacks scored in {timings['attack']:.0f} s")
        extra = {"timings": timings, "resumed_from_round": resumed_from, "memory": memory}
        if not writer:
            return [{} for _ in runs]
        return _write_all(config, setup, state, out, workdirs, tic, extra)


def attack_notice(config: Config, runs: int) -> str:
    """The line printed when the rounds end: which attacks are scored now and, with LiRA,
    that its shadow federations (one compiled program, silent until it ends) take about
    as long as that many federations."""
    line = f"scoring the attacks: {', '.join(config.attack.attacks)}"
    if any(a in shadows.LIRA_ATTACKS for a in config.attack.attacks):
        s = config.attack.lira_shadows
        line += (
            f"; LiRA trains {s} shadow federations of {config.fl.rounds} rounds"
            f"{' per run' if runs > 1 else ''}, about {s * runs} federations' time"
        )
    return line


def _start(engine: Engine, config: Config, setup: Setup):
    """The placed clients, the adversary's view, the keys, round 0's state and its memory."""
    clients = place_clients(setup.clients, engine.mesh)
    own = jax.tree.map(jnp.asarray, setup.clients)  # its own records, from the host arrays
    view = adversary_view(
        own,
        setup.declared,
        adversary=config.fl.adversary,
        victim=config.fl.victim,
        knows_declarations=config.adversary.knows_declarations,
        colluders=collusion.colluders(config) if config.adversary.colludes else (),
    )
    keys = run_keys(setup)
    state = initial_state(engine, config, setup, view, keys)
    memory = {  # what one run holds between rounds; a batch of R runs holds R times this
        "state_bytes_per_run": nbytes(state) // setup.num_runs,
        "client_bytes_per_run": nbytes(setup.clients) // setup.num_runs,
    }
    return clients, view, keys, state, memory


@contextlib.contextmanager
def _ctrl_c_between_rounds(on_round: _Progress) -> Iterator[None]:
    """During the rounds a first Ctrl-C stops the run once the round in flight and its
    checkpoint are done (a save is never cut short); a second stops it at once."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield  # not ours to change: another thread, or a handler someone installed
        return

    def handler(signum, frame):
        if on_round.stop_requested:
            raise KeyboardInterrupt
        on_round.stop_requested = True
        print("Ctrl-C: stopping after this round (Ctrl-C again: now)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def _stopping(on_round: _Progress, where: str) -> Iterator[None]:
    """Ctrl-C and refused writes as one line each, naming the round a rerun resumes from."""
    try:
        yield
    except KeyboardInterrupt:
        at = (
            f"at round {on_round.done + 1}"
            if on_round.done < on_round.rounds
            else f"after round {on_round.done} (in the attacks)"
        )
        raise Interrupted(f"interrupted {at}; {_rerun(on_round.ckpt.resumable_round())}") from None
    except FedGanError:
        raise
    except OSError as e:
        raise StorageError(
            f"{where}: cannot write {e.filename or 'to the workdir'} ({e.strerror or e}); the "
            f"run stopped: make room or make the workdir writable, then "
            f"{_rerun(on_round.ckpt.resumable_round())}"
        ) from e


def _rerun(saved: int) -> str:
    if saved:
        return f"rerun the same command to resume from round {saved}"
    return "rerun the same command to resume from round 0 (no checkpoint yet)"


def _resume(config: Config, checkpoint_dir: str, state: RunState, where: str, progress: bool):
    """The checkpointer, and the state from its latest checkpoint (if any), said first."""
    c = config.checkpoint
    ckpt = Checkpointer(
        checkpoint_dir,
        every=c.every,
        keep=c.keep,
        last_round=config.fl.rounds,
        writer=distributed.is_writer(),
    )
    resumed_from = ckpt.latest_round()
    if resumed_from is not None:
        line = f"resuming {where} from round {resumed_from}"
        if progress:
            tqdm.write(line)
        else:
            logging.info(line)
        state = ckpt.restore(state)
    return ckpt, state, resumed_from


class Saved(NamedTuple):
    """A run's checkpoints read back (`read_back`), with what recomputing on them needs."""

    engine: Engine
    setup: Setup
    view: Any  # the adversary's view
    keys: Any  # simulation.Keys
    checkpointer: Checkpointer
    initial: RunState  # round 0, the shape every checkpoint restores into

    def rounds(self) -> list[int]:
        return self.checkpointer.rounds()

    def state(self, t: int) -> RunState:
        return self.checkpointer.restore(self.initial, t)


def read_back(config: Config, workdir: str) -> Saved:
    """The checkpoints of the run `config` wrote into `workdir`, refused (`WorkdirError`)
    when the workdir holds another config. For analyses of a run's rounds after the fact
    (studies/selection_probe.py); keep ``checkpoint.keep`` large to keep every one."""
    config_lib.validate(config)
    config = config_lib.resolve(config)
    dataset = load_data(config)
    run = run_of(config)
    deals = deal_runs(config, dataset, [run])
    engine = build_engine(config, dataset, num_runs=1)
    if not os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
        raise WorkdirError(f"{workdir} holds no run ({CONFIG_FILE} is missing)")
    claim_workdir(workdir, run.apply(config), resolved=engine.resolved)
    setup = prepare(config, dataset, deals, [run], common_capacity(config, deals))
    _, view, keys, state, _ = _start(engine, config, setup)
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        every=0,
        keep=None,  # a reader deletes nothing
        last_round=config.fl.rounds,
        writer=False,
    )
    return Saved(engine, setup, view, keys, ckpt, state)


def _write_all(config, setup: Setup, state, out, workdirs, tic, extra) -> list[dict]:
    results = []
    for r, (run, workdir) in enumerate(zip(setup.runs, workdirs, strict=True)):
        total = time.perf_counter() - tic
        # A batch's runs share its wall time: each reports its share (and the batch's).
        timings = {**extra["timings"], "total": total / len(setup.runs), "batch_total": total}
        fields = {
            "wall_seconds": timings["total"],
            "phase_seconds": timings,
            "resumed_from_round": extra["resumed_from_round"],
            "memory": extra["memory"],
        }
        results.append(
            outputs.write_run(run.apply(config), setup, r, state, out, workdir, extra=fields)
        )
    return results
