"""What a finished run writes: results.json, metrics.csv, membership.npz, samples.npz,
snapshots.npz and the figures (host-side, numpy).

``results.json`` is written last: its presence marks the run done.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import jax
import numpy as np

from fedgan_jax.adversary import gan_config
from fedgan_jax.core import io
from fedgan_jax.core.types import Config
from fedgan_jax.data import partition
from fedgan_jax.driver import collusion, config_lib
from fedgan_jax.driver.engine import Setup, clients_per_round
from fedgan_jax.driver.state import STREAMS, RunState, plateau_restores
from fedgan_jax.evaluation import plots, protocols
from fedgan_jax.federation import privacy


def cpu_info() -> dict[str, Any]:
    """The CPU model and the instruction-set flags that change float results and speed."""
    info: dict[str, Any] = {"machine": platform.machine(), "model": platform.processor()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            info["model"] = value.strip()
        if key.strip() == "flags":
            wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
            info["isa"] = [f for f in wanted if f in value.split()]
            break
    return info


def _environment() -> dict[str, Any]:
    return {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "python": platform.python_version(),
        "cpu": cpu_info(),
    }


def history_of(state: RunState, r: int) -> dict[str, np.ndarray]:
    """Run r's per-round records: the experimenter's log and the adversary's own."""
    log, adversary = jax.device_get((state.log, state.adversary))
    score = adversary.generator_score
    return {
        "accuracy": log.accuracy[r],
        "loss": log.loss[r],
        "client_loss": log.client_loss[r],
        "own_accuracy": adversary.own_accuracy[r],
        "generator_loss": adversary.generator_loss[r],
        "generator_fooled": adversary.generator_fooled[r],
        "generator_own_mmd": np.full(log.accuracy.shape[1], np.nan) if score is None else score[r],
    }


def _dgen_label(config: Config, selection: dict | None) -> str:
    """The D_gen panel's title: the round of the generator it was drawn from."""
    if selection and selection["round"] and selection["round"] != config.fl.rounds:
        return f"D_gen (generator of round {selection['round']}, {selection['rule']})"
    return f"round {config.fl.rounds} (D_gen)"


def generator_selection(config: Config, adversary, r: int) -> dict[str, Any] | None:
    """gan.select other than last: the round of the generator D_gen came from, its score."""
    if adversary.gan_kept_round is None:
        return None
    kept = int(adversary.gan_kept_round[r])
    patience = config.gan.select_patience
    restores = plateau_restores(np.asarray(adversary.generator_score)[r : r + 1], patience)[0]
    return {
        "rule": config.gan.select,
        "every": config.gan.select_every,
        "round": kept or None,
        "own_mmd": float(np.asarray(adversary.gan_kept_score)[r]) if kept else None,
        "patience": patience,
        "restored_at": [int(t) + 1 for t in np.flatnonzero(restores)],
    }


def _gan_missing(config: Config, gan_start: int, dgen) -> str | None:
    """Why the gan attack has no honest numbers, if it has none."""
    if "gan" not in config.attack.attacks:
        return None
    if gan_start == 0:
        return "the generator never started (the trigger did not fire)"
    if int(dgen.count) == 0:
        return "D_gen is empty: the global model agreed with no generated sample"
    return None


def _target_sets(config: Config, setup: Setup, r: int):
    fl = config.fl
    return protocols.target_sets(
        setup.owner[r],
        setup.dataset.test_y,
        victim=fl.victim,
        adversary=fl.adversary,
        victim_labels=setup.declared[r][fl.victim],
        seed=(config.seed, STREAMS["strict"]),
        protocols=config.attack.protocols,
        colluders=collusion.colluders(config) if config.adversary.colludes else (),
    )


def write_run(
    config: Config,
    setup: Setup,
    r: int,
    state: RunState,
    out: dict,
    workdir: str,
    *,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """results.json, metrics.csv, membership.npz, samples.npz and the figures of run `r`.

    `extra` (timings, resume, memory) is merged into results.json as is.
    """
    history = history_of(state, r)
    gan_start = int(state.adversary.gan_start[r])
    targets = _target_sets(config, setup, r)
    scores = {a: s[r] for a, s in out["scores"].items()}
    decisions = {a: d[r] for a, d in out["decisions"].items()}
    dgen = jax.tree.map(lambda a: a[r], out["dgen"]) if "dgen" in out else None
    gan_missing = _gan_missing(config, gan_start, dgen)
    if gan_missing:
        del scores["gan"], decisions["gan"]
    attacks = protocols.evaluate(scores, decisions, targets)
    if gan_missing:
        attacks["gan"] = None
    accuracy = {k: float(v[r]) for k, v in out["accuracy"].items()}
    result = _result(config, setup, r, history, gan_start, gan_missing, accuracy, attacks)
    recovery = out.get("label_recovery")
    result["label_recovery"] = None if recovery is None else recovery[r]
    result["generator_selection"] = generator_selection(config, state.adversary, r)
    result.update(extra)
    samples = None
    if dgen is not None:
        result["d_gen"], samples = _d_gen(config, setup.dataset, dgen)
        io.write_npz(os.path.join(workdir, "samples.npz"), {"d_gen": samples})
    _write_metrics_csv(workdir, history)
    _write_membership(workdir, out["pool_y"], targets, scores, decisions)
    if state.adversary.snapshots is not None:  # the global models the adversary kept
        _write_snapshots(workdir, jax.device_get(state.adversary.snapshots), r)
    grids = {k: np.asarray(v[r]) for k, v in state.adversary.grids.items()}
    _figures(
        config,
        workdir,
        setup.dataset,
        history,
        targets,
        scores,
        attacks,
        gan_start,
        grids=grids,
        samples=samples,
        dgen_label=_dgen_label(config, result["generator_selection"]),
    )
    io.write_json(os.path.join(workdir, "results.json"), result)  # last: marks the run done
    return io.to_jsonable(result)


def _result(config, setup, r, history, gan_start, gan_missing, accuracy, attacks) -> dict:
    fl, declared = config.fl, setup.declared[r]
    return {
        "config": config_lib.to_dict(config),
        "environment": _environment(),
        "adversary": fl.adversary,
        "victim": fl.victim,
        "victim_num_labels": fl.victim_num_labels,
        "declared_labels": {str(p): np.flatnonzero(row).tolist() for p, row in enumerate(declared)},
        "victim_labels": np.flatnonzero(declared[fl.victim]).tolist(),
        "client_records": setup.clients.counts[r].tolist(),
        "partition": partition_report(config, setup, r),
        "privacy": privacy_report(config, int(setup.clients.counts[r][fl.victim])),
        "main_task_accuracy": history["accuracy"].tolist(),
        "final_main_task_accuracy": float(history["accuracy"][-1]),
        "gan_objective": gan_config.objective_name(config.gan.mode, dict(config.gan.loss)),
        "gan_start_round": gan_start or None,
        "gan_missing": gan_missing,
        "global_model_accuracy": accuracy.get("global_model"),
        "attack_model_accuracy": None if gan_missing else accuracy.get("gan"),
        "oracle_model_accuracy": accuracy.get("oracle"),
        "attacks": attacks,
        "upload": upload_report(config, history["accuracy"], gan_start),
        "colluding": collusion.report(config),
    }


def partition_report(config: Config, setup: Setup, r: int) -> dict[str, Any]:
    """Run r's partition: the scheme, each participant's classes, records and records per
    class (``[N][C]``)."""
    fl, declared = config.fl, setup.declared[r]
    table = partition.records_per_class(setup.owner[r], setup.dataset.train_y, declared.shape)
    scheme = {"disjoint": {}, "dirichlet": {"alpha": fl.dirichlet_alpha}}
    scheme["shared"] = {"holders_per_class": fl.holders_per_class}
    return {
        "scheme": fl.partition,
        **scheme[fl.partition],
        "classes": {str(p): np.flatnonzero(row).tolist() for p, row in enumerate(declared)},
        "records": {str(p): int(n) for p, n in enumerate(table.sum(1))},
        "records_per_class": table.tolist(),
    }


def upload_report(config: Config, accuracy: np.ndarray, gan_start: int) -> dict[str, Any]:
    """The main-task cost of the adversary's upload: accuracy in the round before, the
    round of, and the round after each malicious round, and at the end. Under ``honest``
    the same rounds of ``adversary.ascent_rounds``, to compare with the same seed's run;
    under ``fake_class`` its first malicious round (every round after its generator
    started uploads fakes)."""
    a = config.adversary
    rounds = list(a.ascent_rounds)
    if a.upload == "fake_class":
        rounds = [gan_start + 1] if gan_start and gan_start < len(accuracy) else []

    def at(t):
        return float(accuracy[t - 1]) if 1 <= t <= len(accuracy) else None

    return {
        "name": a.upload,
        "rounds": rounds,
        "accuracy_before": [at(t - 1) for t in rounds],
        "accuracy_at": [at(t) for t in rounds],
        "accuracy_next": [at(t + 1) for t in rounds],
        "final_accuracy": at(len(accuracy)),
    }


def _d_gen(config, ds, dgen) -> tuple[dict, np.ndarray]:
    n = int(dgen.count)
    kept_x, kept_y = dgen.x[:n], dgen.y[:n]  # D_gen: what the global model agreed with
    summary = {
        "generated": int(len(dgen.y)),
        "kept": n,
        "kept_per_class": np.bincount(kept_y, minlength=ds.num_classes).tolist(),
        "diversity": class_diversity(kept_x, kept_y, ds.num_classes),
        "real_diversity": class_diversity(ds.test_x, ds.test_y, ds.num_classes),
    }
    return summary, per_class_grid(kept_x, kept_y, ds.num_classes, config.gan.figure_per_class)


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
        "generator_own_mmd",
    ]
    rows = [
        (
            t + 1,
            *(history[c][t] for c in columns),
            history["client_loss"][t].mean(),
            history["generator_own_mmd"][t],
        )
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


def _write_snapshots(workdir: str, snapshots, r: int) -> None:
    flat = {"round": np.asarray(snapshots.round)}
    for path, leaf in jax.tree_util.tree_flatten_with_path(snapshots.params)[0]:
        flat["/".join(str(getattr(k, "key", k)) for k in path)] = np.asarray(leaf[r])
    io.write_npz(os.path.join(workdir, "snapshots.npz"), flat)


def _figures(
    config, workdir, ds, history, targets, scores, attacks, gan_start, *, grids, samples, dgen_label
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
        panels.append((dgen_label, samples))
        panels.append(("real", per_class_grid(ds.test_x, ds.test_y, ds.num_classes, per_class)))
        objective = gan_config.objective_name(config.gan.mode, dict(config.gan.loss))
        plots.reconstructions(
            os.path.join(workdir, "reconstructions.png"),
            panels,
            title=f"Reconstructions per class (paper Fig. 4), generator {objective}",
        )


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


def per_class_grid(x: np.ndarray, y: np.ndarray, num_classes: int, n: int) -> np.ndarray:
    """The first n records of each class, [classes, n, H, W, C] (blank where fewer)."""
    grid = np.full((num_classes, n, *x.shape[1:]), -1.0, np.float32)
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)[:n]
        grid[c, : len(idx)] = x[idx]
    return grid


def privacy_report(config: Config, victim_records: int) -> dict[str, Any]:
    """`privacy.report` of ``config.fl``'s mechanisms."""
    fl = config.fl
    return privacy.report(
        delta=fl.dp_delta,
        rounds=fl.rounds,
        num_participants=fl.num_participants,
        clients_per_round=clients_per_round(config),
        noise_multiplier=fl.noise_multiplier,
        dpsgd_noise_multiplier=fl.dpsgd_noise_multiplier,
        local_epochs=fl.local_epochs,
        batch_size=fl.batch_size,
        victim_records=victim_records,
    )
