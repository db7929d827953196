"""A sweep: the product of axes over any config field, resumable (paper Figs. 6-8 and more).

Axes, outermost first: ``sweep.gan_modes`` (``gan.mode``), every ``(field, values)`` pair
of ``sweep.axes`` (any field, e.g. ``("fl.noise_multiplier", (0.0, 0.5))``), then
``sweep.label_counts`` (``fl.victim_num_labels``) and ``sweep.seeds`` (``seed``). A run is
one point of the product; its name joins its values (``k2_seed0``,
``adversarial_noise_multiplier=0.5_k2_seed0``).

Runs that differ only in seed and k share one compiled program (`engine.DATA_FIELDS`);
every other axis value gets its own. Every run is padded to the sweep's largest client.

* ``sweep.batched=False`` (default): runs one after another, one run's memory.
* ``sweep.batched=True``: ``sweep.runs_per_batch`` runs (0: all of a program) as one
  computation vmapped over the run axis, R times the memory of one run.

Each run writes ``runs/<name>/`` (results.json, membership.npz, figures). A run whose
results.json exists for the same config is not redone; an interrupted one resumes from its
checkpoint. A run (or batch) that stops on non-finite values does not stop the sweep: it
gets ``failed.json``, the summary lists it, the launcher exits 1 at the end, and a rerun
tries it again. Then ``summary.csv`` / ``summary.md`` (every setting x attack x protocol: mean,
standard deviation and 95% t-interval half-width over seeds), ``accuracy.csv`` and the
figures (`sweep_report.py`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Sequence
from typing import Any

from absl import logging

from fedgan_jax.core import io
from fedgan_jax.core.errors import ConfigError, NonFiniteError
from fedgan_jax.driver import config_lib, distributed, preflight
from fedgan_jax.driver.checkpointing import RESUMABLE_FIELDS, claim_workdir
from fedgan_jax.driver.engine import RunSpec, common_capacity, deal_runs
from fedgan_jax.driver.experiment import load_data, run_batch
from fedgan_jax.driver.simulation import build_engine
from fedgan_jax.driver.sweep_report import summarize
from fedgan_jax.driver.workdir import check_usable, hold

# Axes with their own shorthand fields (sweep.gan_modes, label_counts, seeds).
SHORTHAND = {
    "gan.mode": "sweep.gan_modes",
    "fl.victim_num_labels": "sweep.label_counts",
    "seed": "sweep.seeds",
}


def sweep_axes(config) -> list[tuple[str, tuple]]:
    """``[(field, values), ...]``, outermost first."""
    axes = [("gan.mode", tuple(config.sweep.gan_modes))] if tuple(config.sweep.gan_modes) else []
    axes += [(str(field), tuple(values)) for field, values in config.sweep.axes]
    axes.append(("fl.victim_num_labels", tuple(config.sweep.label_counts)))
    axes.append(("seed", tuple(config.sweep.seeds)))
    return axes


def sweep_runs(config) -> list[RunSpec]:
    axes = sweep_axes(config)
    fields = [f for f, _ in axes]
    return [
        RunSpec(tuple(zip(fields, p, strict=True)))
        for p in itertools.product(*(v for _, v in axes))
    ]


def check_axes(config) -> list[RunSpec]:
    """`sweep.axes` is well formed and every run's config is valid (before any compute)."""
    seen = set()
    for item in config.sweep.axes:
        if len(item) != 2 or isinstance(item[1], str) or not tuple(item[1]):
            raise ConfigError(f"sweep.axes entry {item!r}: must be (field, (value, ...))")
        field, values = str(item[0]), tuple(item[1])
        if field in SHORTHAND:
            raise ConfigError(f"sweep.axes: {field} has its own axis field, {SHORTHAND[field]}")
        if field in seen or field.split(".")[0] in ("sweep", "checkpoint"):
            raise ConfigError(f"sweep.axes: {field!r} is repeated or not a run setting")
        seen.add(field)
        try:
            _field(config, field)
        except (KeyError, AttributeError):
            raise ConfigError(f"sweep.axes: no config field {field!r}") from None
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"sweep.axes: {field}={values!r} has a duplicate entry")
    runs = sweep_runs(config)
    for run in runs:
        config_lib.validate(run.apply(config))
    return runs


def _field(config, field: str):
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def run_dir(workdir: str, run: RunSpec) -> str:
    return os.path.join(workdir, "runs", run.name)


def is_finished(workdir: str, config, run: RunSpec) -> bool:
    """True when the run's folder holds results of exactly this run's config."""
    folder = run_dir(workdir, run)
    if not os.path.exists(os.path.join(folder, "results.json")):
        return False
    claim_workdir(folder, run.apply(config))  # raises if another config owns it
    return True


def run_sweep(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs every point of the sweep not yet finished, then summarises all.

    Every check comes first (every run's config, the workdir, each program's data and the
    memory of its largest batch); only then is the workdir created, locked and written.
    """
    config_lib.validate(config, label_counts=config.sweep.label_counts)
    runs = check_axes(config)
    writer = distributed.is_writer()  # several processes: process 0 alone writes
    if writer:
        check_usable(workdir)
    # one config (and one compiled program) per setting of the non-data axes
    programs = {
        r.program_key: config_lib.resolve(RunSpec(r.program_key).apply(config)) for r in runs
    }
    pending = [r for r in runs if not is_finished(workdir, programs[r.program_key], r)]
    logging.info("sweep: %d runs, %d finished", len(runs), len(runs) - len(pending))
    datasets = {key: load_data(c) for key, c in programs.items()}
    deals = {}
    for key, program_config in programs.items():  # each run dealt once
        mine = [r for r in runs if r.program_key == key]
        deals |= deal_runs(program_config, datasets[key], mine)
    for key, program_config in programs.items():  # the sweep pads all to its largest client
        mine = [r for r in runs if r.program_key == key]
        _check_program(program_config, datasets[key], mine, deals)
    capacity = common_capacity(config, deals)
    with hold(workdir) if writer else contextlib.nullcontext():
        if writer:
            io.write_json(os.path.join(workdir, "sweep_config.json"), config_lib.to_dict(config))
        failed = []
        for key, program_config in programs.items():  # one compiled program each
            mine = [r for r in pending if r.program_key == key]
            if mine:
                failed += _run_program(
                    program_config, datasets[key], mine, workdir, deals, capacity, progress
                )
    if not writer:
        return {}
    return _summarize_finished(config, workdir, runs, failed)


def _summarize_finished(config, workdir: str, runs, failed) -> dict[str, Any]:
    """The summary of every run with results; the runs that stopped on non-finite values
    (`failed`: (run, message) pairs) are listed under it and returned as ``failed``."""
    done = [r for r in runs if os.path.exists(os.path.join(run_dir(workdir, r), "results.json"))]
    if not done:
        raise NonFiniteError(f"every run of the sweep stopped: {failed[0][1]}")
    results = {r: io.read_json(os.path.join(run_dir(workdir, r), "results.json")) for r in done}
    tables = summarize(config, workdir, done, results, run_dir)
    tables["failed"] = [(r.name, message) for r, message in failed]
    if failed:
        lines = [f"* {r.name}: {message}" for r, message in failed]
        md = os.path.join(workdir, "summary.md")
        with open(md) as f:
            text = f.read()
        io.write_text(
            md, text + "\nStopped on non-finite values, no results:\n\n" + "\n".join(lines) + "\n"
        )
    return tables


def _check_program(config, dataset, runs: Sequence[RunSpec], deals: dict) -> None:
    """`preflight.check_run` for the largest batch of this program's runs (`deals`: the
    sweep's, whose largest client sets every run's capacity)."""
    size = max(len(b) for b in _batches(config, runs))
    params = preflight.param_bytes(build_engine(config, dataset, 1))
    preflight.check_run(config, dataset, deals, num_runs=size, param_bytes=params)


def _batches(config, pending: Sequence[RunSpec]) -> list[list[RunSpec]]:
    if not config.sweep.batched:
        return [[r] for r in pending]
    size = config.sweep.runs_per_batch or len(pending)
    return [list(pending[i : i + size]) for i in range(0, len(pending), size)]


def _run_program(config, dataset, pending, workdir, deals, capacity, progress) -> list:
    """Runs the program's pending runs batch by batch. A batch that stops on non-finite
    values (a diverged federation: too much DP noise, too large a step) does not stop the
    sweep: each of its runs gets ``failed.json`` with the error, and the (run, message)
    pairs are returned. A rerun of the sweep tries those runs again."""
    engines, failed = {}, []
    for batch in _batches(config, pending):
        if len(batch) not in engines:
            engines[len(batch)] = build_engine(config, dataset, len(batch))
        if len(batch) == 1:
            ckpt = os.path.join(run_dir(workdir, batch[0]), "checkpoints")
        else:  # keyed by its runs and the config: a changed config never resumes another's
            ident = " ".join(r.name for r in batch)
            ident += config_lib.fingerprint(config, RESUMABLE_FIELDS)
            tag = hashlib.sha256(ident.encode()).hexdigest()[:10]
            ckpt = os.path.join(workdir, "batches", tag, "checkpoints")
        dirs = [run_dir(workdir, r) for r in batch]
        try:
            run_batch(
                config,
                dataset,
                batch,
                dirs,
                engine=engines[len(batch)],
                deals=deals,
                capacity=capacity,
                checkpoint_dir=ckpt,
                progress=progress,
            )
        except NonFiniteError as e:
            logging.warning("sweep: %s; the sweep goes on without %d run(s)", e, len(batch))
            failed += [(r, str(e)) for r in batch]
        _mark_failed(dirs, [str(e) for r, e in failed if r in batch])
    return failed


def _mark_failed(dirs: Sequence[str], messages: Sequence[str]) -> None:
    """Writes (or, after a success, removes) each run's ``failed.json`` (process 0 only)."""
    if not distributed.is_writer():
        return
    for d in dirs:
        path = os.path.join(d, "failed.json")
        if messages:
            os.makedirs(d, exist_ok=True)
            io.write_json(path, {"error": messages[0], "stopped": "non-finite values"})
        elif os.path.exists(path):
            os.remove(path)
