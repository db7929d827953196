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
from fedgan_jax.engine import STREAMS, Engine, RunSpec, Setup, common_capacity, prepare, run_of
from fedgan_jax.simulation import attack_phase, federate, initial_state
from fedgan_jax.types import Config


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


def run_config(config: Config, run: RunSpec) -> Config:
    """The config of one run of a sweep: its seed, victim label count and mode filled in."""
    c = with_gan_mode(config, run.gan_mode)
    with c.unlocked():
        c.seed = run.seed
        c.fl.victim_num_labels = run.victim_num_labels
    return c


def with_gan_mode(config: Config, mode: str | None) -> Config:
    """A copy of `config` with gan.mode set (None: unchanged)."""
    c = config.copy_and_resolve_references()
    if mode:
        with c.unlocked():
            c.gan.mode = mode
    return c


def train_and_evaluate(config: Config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
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
    config: Config,
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
        claim_workdir(workdir, run_config(config, run), resolved=engine.resolved)
    setup = prepare(config, dataset, runs, capacity)
    clients = engine.place_clients(setup.clients)
    view = adversary_view(
        clients, engine.put(setup.declared), adversary=config.fl.adversary, victim=config.fl.victim
    )
    keys = engine.run_keys(runs)
    state = initial_state(engine, setup, view, keys)
    memory = {  # what one run holds between rounds; a batch of R runs holds R times this
        "state_bytes_per_run": _nbytes(state) // len(runs),
        "client_bytes_per_run": _nbytes(setup.clients) // len(runs),
    }
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
        "runs_in_batch": len(runs),
    }
    results = []
    for r, (run, workdir) in enumerate(zip(runs, workdirs, strict=True)):
        total = time.perf_counter() - tic
        # A batch's runs share its wall time: each reports its share (and the batch's).
        shares = {"total": total / len(runs), "batch_total": total}
        result = write_run(
            run_config(config, run),
            setup,
            r,
            state,
            out,
            workdir,
            timings={**timings, **shares},
            resumed_from=resumed_from,
            memory=memory,
        )
        results.append(result)
    return results


def _nbytes(tree) -> int:
    return int(sum(leaf.nbytes for leaf in jax.tree.leaves(tree)))


def _environment() -> dict[str, Any]:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "python": platform.python_version(),
    }


def write_run(
    config: Config,
    setup: Setup,
    r: int,
    state: dict,
    out: dict,
    workdir: str,
    *,
    timings: dict[str, float],
    resumed_from: int | None,
    memory: dict[str, int] | None = None,
) -> dict[str, Any]:
    """results.json, metrics.csv, membership.npz, samples.npz and the figures of run `r`."""
    ds, fl = setup.dataset, config.fl
    declared = setup.declared[r]
    gan_start = int(state["gan_start"][r])
    history = {k: v[r] for k, v in state["history"].items()}
    targets = protocols.target_sets(
        setup.owner[r],
        ds.test_y,
        victim=fl.victim,
        adversary=fl.adversary,
        victim_labels=declared[fl.victim],
        seed=(config.seed, STREAMS["strict"]),
        protocols=config.attack.protocols,
    )
    scores = {a: s[r] for a, s in out["scores"].items()}
    decisions = {a: d[r] for a, d in out["decisions"].items()}
    dgen = jax.tree.map(lambda a: a[r], out["dgen"]) if "dgen" in out else None
    gan_missing = None  # why the gan attack has no honest numbers, if it has none
    if "gan" in config.attack.attacks:
        if gan_start == 0:
            gan_missing = "the generator never started (the trigger did not fire)"
        elif int(dgen.count) == 0:
            gan_missing = "D_gen is empty: the global model agreed with no generated sample"
    if gan_missing:
        del scores["gan"], decisions["gan"]
    attacks = protocols.evaluate(scores, decisions, targets)
    if gan_missing:
        attacks["gan"] = None
    accuracy = {k: float(v[r]) for k, v in out["accuracy"].items()}
    result: dict[str, Any] = {
        "config": config_lib.to_dict(config),
        "environment": _environment(),
        "adversary": fl.adversary,
        "victim": fl.victim,
        "victim_num_labels": fl.victim_num_labels,
        "declared_labels": {str(p): np.flatnonzero(row).tolist() for p, row in enumerate(declared)},
        "victim_labels": np.flatnonzero(declared[fl.victim]).tolist(),
        "client_records": setup.clients.counts[r].tolist(),
        "main_task_accuracy": history["accuracy"].tolist(),
        "final_main_task_accuracy": float(history["accuracy"][-1]),
        "gan_start_round": gan_start or None,
        "gan_missing": gan_missing,
        "global_model_accuracy": accuracy.get("global_model"),
        "attack_model_accuracy": None if gan_missing else accuracy.get("gan"),
        "oracle_model_accuracy": accuracy.get("oracle"),
        "attacks": attacks,
        "wall_seconds": timings["total"],
        "phase_seconds": timings,
        "resumed_from_round": resumed_from,
        "memory": memory,
    }
    samples = None
    if dgen is not None:
        n = int(dgen.count)
        kept_x, kept_y = dgen.x[:n], dgen.y[:n]  # D_gen: what the global model agreed with
        result["d_gen"] = {
            "generated": int(len(dgen.y)),
            "kept": n,
            "kept_per_class": np.bincount(kept_y, minlength=ds.num_classes).tolist(),
            "diversity": class_diversity(kept_x, kept_y, ds.num_classes),
            "real_diversity": class_diversity(ds.test_x, ds.test_y, ds.num_classes),
        }
        samples = _per_class_grid(kept_x, kept_y, ds.num_classes, config.gan.figure_per_class)
        io.write_npz(os.path.join(workdir, "samples.npz"), {"d_gen": samples})
    _write_metrics_csv(workdir, history)
    _write_membership(workdir, out["pool_y"], targets, scores, decisions)
    if state["snapshots"]:  # the global models the adversary kept
        _write_snapshots(workdir, state["snapshots"], r)
    _figures(
        config,
        workdir,
        ds,
        history,
        targets,
        scores,
        attacks,
        gan_start,
        grids={k: v[r] for k, v in state["grids"].items()},
        samples=samples,
    )
    io.write_json(os.path.join(workdir, "results.json"), result)  # last: marks the run done
    return io.to_jsonable(result)


def _write_metrics_csv(workdir: str, history: dict[str, np.ndarray]) -> None:
    columns = ("accuracy", "loss", "own_accuracy", "generator_loss", "generator_fooled")
    header = [
        "round",
        "main_task_accuracy",
        "main_task_loss",
        "adversary_own_accuracy",
        "generator_loss",
        "generator_fooled",
        "mean_client_loss",
    ]
    rows = [
        (t + 1, *(history[c][t] for c in columns), history["client_loss"][t].mean())
        for t in range(len(history["accuracy"]))
    ]
    io.write_csv(os.path.join(workdir, "metrics.csv"), header, rows)


def _write_membership(workdir, pool_y, targets, scores, decisions) -> None:
    arrays = {"pool_label": pool_y}
    for protocol, target in targets.items():
        arrays[f"index__{protocol}"] = target.index
        arrays[f"is_member__{protocol}"] = target.is_member
        for name in scores:
            arrays[f"score__{name}__{protocol}"] = scores[name][target.index]
            arrays[f"decision__{name}__{protocol}"] = decisions[name][target.index]
    io.write_npz(os.path.join(workdir, "membership.npz"), arrays)


def _write_snapshots(workdir: str, snapshots: dict, r: int) -> None:
    flat = {"round": snapshots["round"]}
    for path, leaf in jax.tree_util.tree_flatten_with_path(snapshots["params"])[0]:
        flat["/".join(str(getattr(k, "key", k)) for k in path)] = leaf[r]
    io.write_npz(os.path.join(workdir, "snapshots.npz"), flat)


def _figures(
    config, workdir, ds, history, targets, scores, attacks, gan_start, *, grids, samples
) -> None:
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
    if samples is not None and gan_start:
        per_class = config.gan.figure_per_class
        panels = [(f"round {gan_start} (first)", grids["first"])]
        panels += [
            (f"round {label}", grids[label])
            for label in map(str, config.gan.figure_rounds)
            if int(label) > gan_start
        ]
        panels.append((f"round {config.fl.rounds} (D_gen)", samples))
        panels.append(("real", _per_class_grid(ds.test_x, ds.test_y, ds.num_classes, per_class)))
        plots.reconstructions(os.path.join(workdir, "reconstructions.png"), panels)


def class_diversity(
    x: np.ndarray, y: np.ndarray, num_classes: int, most: int = 100
) -> float | None:
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
