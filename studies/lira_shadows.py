"""LiRA by a participant with S shadow federations, beside the passive scores it replaces.

    python studies/lira_shadows.py --shadows=4,16 --seeds=0,1,2

On the bundled MNIST (`fj.load_dataset("mnist", "bundled")`, `--per_class` training
records of each class kept), 5 participants, adversary 0, victim 1 holding k=2 labels
(disjoint declared labels), the Table II classifier: per seed, the real federation, then
for each candidate pool and each S the adversary's S shadow federations (`fj.
shadow_masks`, `fj.shadow_clients`, `fj.train_shadows` with the real federation's
hyper-parameters) and LiRA's scores against the real final global model. Pools, as in
`fedgan_jax.evaluation.protocols`:

* ``within``: the victim's records against every held-out (test) record of its classes,
  the case a label rule cannot decide;
* ``strict``: the strict protocol's targets (the victim's records, the other benign
  participants', and as many held-out records of the victim's classes as members).

Each pool is the adversary's candidate set for its own shadows (S shadow federations per
pool). Scores: ``lira`` (online), ``lira_offline``, ``lira_global`` (online, one pooled
variance per side), ``lira_snap`` (online, summed over the rounds in `--keep_rounds`
and the last), ``loss_calibrated`` (the best passive score) and ``label_rule`` (the
global model's probability mass on the victim's labels; `fj.decide` is its IN rule).
Printed: a markdown table of AUC and TPR at 1% and 0.1% FPR (the latter is the TPR at
zero false positives when a pool has under 1,000 non-members), mean and spread over the
seeds, and the cost of the shadows (shadow federations per hour, compile included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fedgan_jax as fj  # noqa: E402
from fedgan_jax.adversary import lira, membership  # noqa: E402
from fedgan_jax.evaluation import protocols  # noqa: E402

_SHADOWS = flags.DEFINE_list("shadows", ["4", "16"], "Shadow federations per pool (S).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the real federation.")
_PER_CLASS = flags.DEFINE_integer("per_class", 100, "Training records kept per class.")
_ROUNDS = flags.DEFINE_integer("rounds", 20, "FedAvg rounds.")
_EPOCHS = flags.DEFINE_integer("local_epochs", 2, "Local epochs per round (E).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Local batch size.")
_LR = flags.DEFINE_float("learning_rate", 0.05, "Clients' SGD rate.")
_KEEP = flags.DEFINE_list("keep_rounds", ["5", "10", "15"], "Rounds kept for lira_snap.")
_AXIS = flags.DEFINE_enum("run_axis", "map", lira.RUN_AXES, "How the shadows are mapped.")
_POOLS = flags.DEFINE_list("pools", ["within", "strict"], "Candidate pools.")
_JSON = flags.DEFINE_string("json", None, "Also write every per-seed row here.")

ADVERSARY, VICTIM, K = 0, 1, 2
LEVELS = ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")


def _pools(part, data, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each pool's candidates (x, y) and truth, from the strict protocol's target set."""
    n_train = len(data.train_y)
    strict = protocols.target_sets(
        part.owner,
        data.test_y,
        victim=VICTIM,
        adversary=ADVERSARY,
        victim_labels=part.declared[VICTIM],
        seed=seed,
        protocols=("strict",),
    )["strict"]
    held = np.flatnonzero(part.declared[VICTIM][data.test_y]) + n_train
    within = np.concatenate([np.flatnonzero(part.owner == VICTIM), held])
    pool_x = np.concatenate([data.train_x, data.test_x])
    pool_y = np.concatenate([data.train_y, data.test_y]).astype(np.int32)
    out = {
        "within": (within, within < n_train),
        "strict": (strict.index, strict.is_member),
    }
    return {p: (pool_x[i], pool_y[i], m) for p, (i, m) in out.items() if p in _POOLS.value}


def _metrics(is_member: np.ndarray, scores) -> dict[str, float]:
    scores = np.asarray(scores, np.float64)
    m = fj.membership_metrics(is_member, scores, scores > np.median(scores))
    return {level: m[level] for level in LEVELS}


def _passive(apply_fn, params, x, y, is_member, victim_labels) -> dict[str, dict]:
    logits = apply_fn(params, jnp.asarray(x))
    rule = fj.victim_mass(logits, jnp.asarray(victim_labels))
    calibrated = fj.loss_calibrated(apply_fn, params, x, y)
    return {
        "loss_calibrated": _metrics(is_member, calibrated),
        "label_rule": _metrics(is_member, rule),
    }


def _lira(ctx, real, pool, num_shadows: int, key) -> tuple[dict[str, dict], float]:
    """LiRA's four variants on one pool with S shadows; returns them and the shadows' wall
    seconds (compile included)."""
    x, y, is_member = pool
    masks = np.asarray(fj.shadow_masks(jax.random.fold_in(key, 0), len(y), num_shadows))
    clients = fj.shadow_clients(ctx["view"], masks, x, y, multiple_of=_BATCH.value)
    start = time.perf_counter()
    shadows = fj.train_shadows(
        ctx["fed"],
        ctx["init"],
        clients,
        jax.random.fold_in(key, 1),
        rounds=_ROUNDS.value,
        keep_rounds=ctx["keep"],
        run_axis=_AXIS.value,
    )
    jax.block_until_ready(shadows)
    seconds = time.perf_counter() - start
    apply_fn, (target, target_snaps) = ctx["apply_fn"], real
    args = (apply_fn, target, shadows.params, masks, x, y)
    out = {
        "lira": fj.lira_scores(*args),
        "lira_offline": fj.lira_scores(*args, online=False),
        "lira_global": fj.lira_scores(*args, global_variance=True),
        "lira_snap": fj.lira_snapshot_scores(
            apply_fn, target_snaps, shadows.snapshots, masks, x, y
        ),
    }
    _print_shift(apply_fn, target, shadows.params, masks, pool)
    return {name: _metrics(is_member, s) for name, s in out.items()}, seconds


def _print_shift(apply_fn, target, shadow_params, masks, pool) -> None:
    """Whether the shadows imitate the real federation: the non-members' confidence under
    the real model, standardised by their OUT shadows (near 0 when they do), and the
    members' by their IN shadows."""
    x, y, is_member = pool
    x, y = jnp.asarray(x), jnp.asarray(y)

    def phi(p):
        return membership.logit_confidence(apply_fn(p, x), y)

    target, shadows = np.asarray(phi(target)), np.asarray(jax.lax.map(phi, shadow_params))
    for side, who, m in (("OUT", ~is_member, ~masks), ("IN", is_member, masks)):
        z = [(target[j] - np.median(shadows[m[:, j], j])) / shadows[m[:, j], j].std()
             for j in np.flatnonzero(who)]  # fmt: skip
        print(f"    target vs {side} shadows, median z: {np.median(z):+.2f}", flush=True)


def _seed(seed: int, data, costs: list) -> dict:
    """Rows ``{(pool, attack, S): metrics}`` of one seed (S 0: the passive scores)."""
    part = fj.clients_from_arrays(
        data.train_x, data.train_y, num_clients=5, adversary=ADVERSARY, victim=VICTIM,
        victim_num_labels=K, seed=seed, multiple_of=_BATCH.value,
    )  # fmt: skip
    model = fj.classifier("mnist")
    apply_fn = lambda p, x: model.apply({"params": p}, x)  # noqa: E731
    fed = fj.federated_averaging(
        apply_fn, num_clients=5, local_epochs=_EPOCHS.value, batch_size=_BATCH.value,
        learning_rate=_LR.value, client_chunk=1,
    )  # fmt: skip
    init = lambda k: fj.init_params(model, k, jnp.zeros((1, 28, 28, 1)))  # noqa: E731
    keep = (*sorted(int(t) for t in _KEEP.value), _ROUNDS.value)
    real_program = jax.jit(lira.shadow_program(fed, init, rounds=_ROUNDS.value, keep_rounds=keep))
    clients = jax.tree.map(jnp.asarray, part.clients)
    target, snaps = real_program(clients, jax.random.key(1000 + seed))
    view = fj.view_of(part.clients, part.declared, adversary=ADVERSARY, victim=VICTIM)
    ctx = dict(fed=fed, init=init, apply_fn=apply_fn, view=view, keep=keep)
    accuracy = float((jnp.argmax(apply_fn(target, data.test_x), -1) == data.test_y).mean())
    print(f"seed {seed}: real federation, test accuracy {accuracy:.3f}", flush=True)
    rows = {("-", "test_accuracy", 0): {"accuracy": accuracy}}
    for name, pool in _pools(part, data, seed).items():
        passive = _passive(apply_fn, target, *pool, part.declared[VICTIM])
        rows |= {(name, attack, 0): m for attack, m in passive.items()}
        for s in map(int, _SHADOWS.value):
            key = jax.random.key(seed * 1000 + s)
            got, seconds = _lira(ctx, (target, snaps), pool, s, key)
            costs.append((s, seconds))
            rows |= {(name, attack, s): m for attack, m in got.items()}
            print(f"  {name}: S={s} in {seconds:.0f} s: {got['lira']}", flush=True)
    return rows


def _table(per_seed: list[dict]) -> None:
    print("\n| pool | attack | S | AUC | TPR@1%FPR | TPR@0.1%FPR |")
    print("|---|---|---|---|---|---|")
    for row in per_seed[0]:
        if row[0] == "-":
            continue
        cells = []
        for level in LEVELS:
            v = np.array([r[row][level] for r in per_seed])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        pool, attack, s = row
        print(f"| {pool} | {attack} | {s or '-'} | " + " | ".join(cells) + " |")


def main(argv):
    del argv
    data = fj.load_dataset("mnist", "bundled", max_train_per_class=_PER_CLASS.value)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = [line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line]
    print(f"CPU: {name[0] if name else 'unknown'}, {os.cpu_count()} cores, jax {jax.__version__}")
    costs, per_seed, seconds = [], [], []
    for seed in map(int, _SEEDS.value):
        start = time.perf_counter()
        per_seed.append(_seed(seed, data, costs))
        seconds.append(time.perf_counter() - start)
        print(f"seed {seed}: {seconds[-1]:.0f} s", flush=True)
    _table(per_seed)
    if _JSON.value:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        rows = [
            dict(seed=int(seed), pool=pool, attack=attack, shadows=s, seconds=t, **m)
            for seed, got, t in zip(_SEEDS.value, per_seed, seconds, strict=True)
            for (pool, attack, s), m in got.items()
        ]
        os.makedirs(os.path.dirname(_JSON.value) or ".", exist_ok=True)
        with open(_JSON.value, "w") as f:
            json.dump(dict(commit=commit.stdout.strip(), argv=sys.argv, cpu=name, rows=rows), f)
    print(f"\n(mean ± std over seeds {','.join(_SEEDS.value)}; S '-': no shadows)")
    for s in sorted({s for s, _ in costs}):
        seconds = [t for k, t in costs if k == s]
        rate = s * 3600 / np.mean(seconds)
        print(f"S={s}: {np.mean(seconds):.1f} s per call, {rate:.0f} shadow federations/hour")


if __name__ == "__main__":
    app.run(main)
