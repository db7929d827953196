"""`train_and_evaluate(config, workdir)`: one experiment, resumable, with every output.

Writes into the workdir: ``config.json`` (the resolved config, which guards against
mixing experiments), ``checkpoints/`` (orbax), ``results.json``, ``metrics.csv`` (per
round), ``membership.npz`` (ground truth and per-record scores, to recompute every metric)
and the figures ``accuracy.png``, ``reconstructions.png``, ``roc.png``, ``tp_fn.png``.
`run_batch` does the same for several runs at once (a sweep's vmapped batch).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm import tqdm

from fedgan_jax import config_lib, data, io, plots, protocols
from fedgan_jax.adversary import adversary_view
from fedgan_jax.checkpointing import Checkpointer, claim_workdir
from fedgan_jax.simulation import (
    Engine,
    RunSpec,
    Setup,
    attack_phase,
    common_capacity,
    federate,
    initial_state,
    prepare,
    run_of,
)

STRICT_STREAM = 8  # seed stream of the strict protocol's held-out sample


def load_data(config) -> data.Dataset:
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


def run_config(config, run: RunSpec):
    """The config of one run of a sweep: its seed, victim label count and mode filled in."""
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.seed = run.seed
        c.fl.victim_num_labels = run.victim_num_labels
        if run.gan_mode:
            c.gan.mode = run.gan_mode
    return c


def train_and_evaluate(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) the experiment `config` into `workdir`; returns results.json."""
    config_lib.validate(config)
    dataset = load_data(config)
    run = run_of(config)
    engine = Engine(config, dataset, num_runs=1)
    capacity = common_capacity(config, dataset, [run])
    return run_batch(
        config,
        dataset,
        [run],
        [workdir],
        engine=engine,
        capacity=capacity,
        checkpoint_dir=os.path.join(workdir, "checkpoints"),
        progress=progress,
    )[0]


def run_batch(
    config,
    dataset: data.Dataset,
    runs: Sequence[RunSpec],
    workdirs: Sequence[str],
    *,
    engine: Engine,
    capacity: int,
    checkpoint_dir: str,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Runs `runs` as one computation (engine.num_runs of them), each into its workdir."""
    tic = time.perf_counter()
    for run, workdir in zip(runs, workdirs, strict=True):
        claim_workdir(workdir, run_config(config, run))
    setup = prepare(config, dataset, runs, capacity)
    clients = engine.place_clients(setup.clients)
    view = adversary_view(
        clients, engine.put(setup.declared), adversary=config.fl.adversary, victim=config.fl.victim
    )
    keys = engine.run_keys(runs)
    state = initial_state(engine, setup, view, keys)
    ckpt = Checkpointer(
        checkpoint_dir,
        every=config.checkpoint.every,
        keep=config.checkpoint.keep,
        last_round=config.fl.rounds,
    )
    resumed_from = ckpt.latest_round()
    if resumed_from is not None:
        state = ckpt.restore(state)
        logging.info("resumed %s from round %d", checkpoint_dir, resumed_from)
    names = ", ".join(r.name for r in runs)
    bar = tqdm(
        total=config.fl.rounds,
        initial=int(state["round"]),
        disable=not progress,
        desc=f"federation [{names}]",
        unit="round",
        dynamic_ncols=True,
    )

    def on_round(state):
        t = int(state["round"])
        acc = state["history"]["accuracy"][:, t - 1]
        started = state["gan_start"]
        off = int((started == 0).sum())
        generator = "on" if not off else ("off" if len(started) == 1 else f"off in {off} runs")
        line = (
            f"round {t}/{config.fl.rounds}: main-task accuracy "
            f"{np.array2string(acc, precision=4)}, generator {generator}, "
            f"{state['round_seconds']:.2f}s"
        )
        if progress:
            tqdm.write(line)
        else:
            logging.info(line)
        bar.set_postfix(acc=f"{acc.mean():.4f}", refresh=False)
        bar.update(1)
        ckpt.maybe_save(state)

    test = (jnp.asarray(dataset.test_x), jnp.asarray(dataset.test_y))
    federation_tic = time.perf_counter()
    try:  # on an error, the bar and the checkpointer close before the message is printed
        state = federate(
            engine,
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
        bar.close()
        ckpt.close()
    federation_seconds = time.perf_counter() - federation_tic
    attack_tic = time.perf_counter()
    out = attack_phase(engine, setup, state, view=view, keys=keys)
    timings = {
        "federation": federation_seconds,
        "attack": time.perf_counter() - attack_tic,
    }
    results = []
    for r, (run, workdir) in enumerate(zip(runs, workdirs, strict=True)):
        result = write_run(
            run_config(config, run),
            setup,
            r,
            state,
            out,
            workdir,
            timings={**timings, "total": time.perf_counter() - tic},
            resumed_from=resumed_from,
        )
        results.append(result)
    return results


def _environment() -> dict[str, Any]:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "python": platform.python_version(),
    }


def write_run(
    config, setup: Setup, r: int, state, out, workdir: str, *, timings, resumed_from
) -> dict[str, Any]:
    """results.json, metrics.csv, membership.npz and the figures of run `r`."""
    ds = setup.dataset
    fl = config.fl
    declared = setup.declared[r]
    victim_labels = declared[fl.victim]
    gan_start = int(state["gan_start"][r])
    history = {k: v[r] for k, v in state["history"].items()}
    targets = protocols.target_sets(
        setup.owner[r],
        ds.test_y,
        victim=fl.victim,
        adversary=fl.adversary,
        victim_labels=victim_labels,
        seed=(config.seed, STRICT_STREAM),
        protocols=config.attack.protocols,
    )
    scores = {a: s[r] for a, s in out["scores"].items()}
    decisions = {a: d[r] for a, d in out["decisions"].items()}
    if "gan" in scores and gan_start == 0:  # never triggered: no honest gan numbers
        del scores["gan"], decisions["gan"]
    attacks = protocols.evaluate(scores, decisions, targets)
    if "gan" in config.attack.attacks and gan_start == 0:
        attacks["gan"] = None
    accuracy = {k: float(v[r]) for k, v in out["accuracy"].items()}
    result: dict[str, Any] = {
        "config": config_lib.to_dict(config),
        "environment": _environment(),
        "adversary": fl.adversary,
        "victim": fl.victim,
        "victim_num_labels": fl.victim_num_labels,
        "declared_labels": {str(p): np.flatnonzero(row).tolist() for p, row in enumerate(declared)},
        "victim_labels": np.flatnonzero(victim_labels).tolist(),
        "client_records": setup.clients.counts[r].tolist(),
        "main_task_accuracy": history["accuracy"].tolist(),
        "final_main_task_accuracy": float(history["accuracy"][-1]),
        "gan_start_round": gan_start or None,
        "global_model_accuracy": accuracy.get("global_model"),
        "attack_model_accuracy": accuracy.get("gan") if gan_start else None,
        "oracle_model_accuracy": accuracy.get("oracle"),
        "attacks": attacks,
        "wall_seconds": timings["total"],
        "phase_seconds": timings,
        "resumed_from_round": resumed_from,
    }
    if "dgen" in out:
        dgen = jax.tree.map(lambda a: a[r], out["dgen"])
        n = int(dgen.count)
        result["d_gen"] = {
            "generated": int(len(dgen.y)),
            "kept": n,
            "kept_per_class": np.bincount(dgen.y[:n], minlength=ds.num_classes).tolist(),
            "diversity": class_diversity(dgen.x[:n], dgen.y[:n], ds.num_classes),
            "real_diversity": class_diversity(ds.test_x, ds.test_y, ds.num_classes),
        }
        grid = _per_class_grid(dgen.x, dgen.target, ds.num_classes, config.gan.figure_per_class)
        io.write_npz(os.path.join(workdir, "samples.npz"), {"d_gen": grid})
    io.write_csv(
        os.path.join(workdir, "metrics.csv"),
        [
            "round",
            "main_task_accuracy",
            "main_task_loss",
            "mean_client_loss",
            "generator_loss",
            "generator_fooled",
        ],
        [
            (
                t + 1,
                history["accuracy"][t],
                history["loss"][t],
                history["client_loss"][t].mean(),
                history["generator_loss"][t],
                history["generator_fooled"][t],
            )
            for t in range(fl.rounds)
        ],
    )
    arrays = {"pool_label": out["pool_y"]}
    for protocol, target in targets.items():
        arrays[f"index__{protocol}"] = target.index
        arrays[f"is_member__{protocol}"] = target.is_member
        for attack_name in scores:
            arrays[f"score__{attack_name}__{protocol}"] = scores[attack_name][target.index]
            arrays[f"decision__{attack_name}__{protocol}"] = decisions[attack_name][target.index]
    io.write_npz(os.path.join(workdir, "membership.npz"), arrays)
    if config.adversary.snapshot_every:  # the global models the adversary kept
        snaps = state["snapshots"]
        flat = {"round": snaps["round"]}
        for path, leaf in jax.tree_util.tree_flatten_with_path(snaps["params"])[0]:
            flat["/".join(str(getattr(k, "key", k)) for k in path)] = leaf[r]
        io.write_npz(os.path.join(workdir, "snapshots.npz"), flat)
    _figures(config, setup, r, state, out, workdir, history, targets, scores, attacks, gan_start)
    io.write_json(os.path.join(workdir, "results.json"), result)  # last: marks the run done
    return io.to_jsonable(result)


def _figures(
    config, setup, r, state, out, workdir, history, targets, scores, attacks, gan_start
) -> None:
    ds = setup.dataset
    plots.accuracy_curve(
        os.path.join(workdir, "accuracy.png"),
        {"global model": history["accuracy"]},
        gan_start=gan_start or None,
        trigger=config.gan.trigger_accuracy if config.gan.trigger == "accuracy" else None,
    )
    if scores:
        plots.roc_curves(
            os.path.join(workdir, "roc.png"),
            {p: {a: (t.is_member, scores[a][t.index]) for a in scores} for p, t in targets.items()},
        )
        plots.tp_fn_bars(
            os.path.join(workdir, "tp_fn.png"), {a: m for a, m in attacks.items() if m}
        )
    if "dgen" in out and gan_start:
        per_class = config.gan.figure_per_class
        panels = [(f"round {gan_start} (first)", state["grids"]["first"][r])]
        for label in map(str, config.gan.figure_rounds):
            if int(label) > gan_start:
                panels.append((f"round {label}", state["grids"][label][r]))
        dgen = jax.tree.map(lambda a: a[r], out["dgen"])
        final = _per_class_grid(dgen.x, dgen.target, ds.num_classes, per_class)
        panels.append((f"round {config.fl.rounds} (D_gen)", final))
        panels.append(("real", _per_class_grid(ds.test_x, ds.test_y, ds.num_classes, per_class)))
        plots.reconstructions(os.path.join(workdir, "reconstructions.png"), panels)


def class_diversity(x: np.ndarray, y: np.ndarray, num_classes: int, most: int = 100) -> float:
    """Mean pairwise L2 distance between same-class images (first `most` per class),
    averaged over the classes with two or more: 0 for a collapsed generator."""
    values = []
    for c in range(num_classes):
        v = np.asarray(x[y == c][:most], np.float64).reshape(-1, int(np.prod(x.shape[1:])))
        if len(v) < 2:
            continue
        sq = (v**2).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None] - 2 * v @ v.T, 0.0)
        values.append(np.sqrt(d2)[np.triu_indices(len(v), 1)].mean())
    return float(np.mean(values)) if values else None


def _per_class_grid(x: np.ndarray, y: np.ndarray, num_classes: int, n: int) -> np.ndarray:
    """The first n records of each class, [classes, n, H, W, C] (blank where fewer)."""
    grid = np.full((num_classes, n, *x.shape[1:]), -1.0, np.float32)
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)[:n]
        grid[c, : len(idx)] = x[idx]
    return grid
