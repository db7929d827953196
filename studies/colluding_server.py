"""A server colluding with the adversary, against the demo-sized federation, with and
without secure aggregation.

    PYTHONPATH=. python studies/colluding_server.py --rounds=30 --seeds=0,1,2 \
        --json=runs/colluding.json

The federation of ``configs/demo.py`` through the public API: the bundled 5k MNIST, 5
participants with disjoint labels (adversary 0, victim 1 declaring k=2 labels), 1 local
epoch of SGD at lr 0.05, batch 64, example-weighted FedAvg, ``--rounds`` rounds. The
round is built with ``server_view="uploads"``; the server's view under secure aggregation
is the example-weighted sum of the same round's uploads (what a round built with
``server_view="secure_aggregation"`` hands out: tests/test_colluding.py checks the two
agree and that the model is the same bit for bit).

Candidates: ``--per_group`` of the victim's training records (members), the held-out test
records of the victim's classes, and ``--per_group`` records of the benign participants
other than the victim (2, 3, 4), each a seeded sample. Every attack scores all of them;
each is reported three times: members against the held-out records (the strict protocol's
hard case), against the other participants' records (the paper's protocol), and against
both (``strict``: the others' records and a seeded sample of as many held-out records as
members, the strict protocol's target set).

``--per_class``, ``--local_epochs``, ``--batch_size``, ``--learning_rate`` and
``--pad_to_batch`` build other federations (docs/frontier.md: the memorising one of
studies/lira_shadows.py); their defaults are the demo-sized federation above.

Attacks: FedMIA (``loss`` and ``cosine`` statistics) and source inference (the victim's
summed log-posterior) over the last ``--attack_rounds`` rounds; ``loss_calibrated`` and
the label rule (`fj.decide`'s IN rule, scored by the mass on the victim's labels) on the
final global model, which secure aggregation does not change.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import fedgan_jax as fj  # noqa: E402

_ROUNDS = flags.DEFINE_integer("rounds", 30, "Communication rounds.")
_ATTACK = flags.DEFINE_integer("attack_rounds", 10, "The last rounds the attacks read.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (partition, init, rounds).")
_PER_GROUP = flags.DEFINE_integer("per_group", 200, "Members and others' records sampled.")
_JSON = flags.DEFINE_string("json", None, "Also write every row here.")
_PER_CLASS = flags.DEFINE_integer("per_class", 0, "Training records kept per class (0: all).")
_EPOCHS = flags.DEFINE_integer("local_epochs", 1, "Local epochs per round (E).")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Local batch size.")
_LR = flags.DEFINE_float("learning_rate", 0.05, "Clients' SGD rate.")
_PAD = flags.DEFINE_bool(
    "pad_to_batch",
    False,
    "Pad each participant's records to a multiple of the batch, as studies/lira_shadows.py does.",
)

ADVERSARY, VICTIM, N = 0, 1, 5
FPRS = (0.01, 0.001)


def candidates(data, part, rng, per_group):
    """(x, y, group): group 0 the victim's records, 1 held-out records of its classes,
    2 the other benign participants' records."""
    train_x, train_y = np.asarray(data.train_x), np.asarray(data.train_y)
    test_x, test_y = np.asarray(data.test_x), np.asarray(data.test_y)
    victim = rng.permutation(np.flatnonzero(part.owner == VICTIM))[:per_group]
    others = np.flatnonzero(~np.isin(part.owner, [ADVERSARY, VICTIM, -1]))
    others = rng.permutation(others)[:per_group]
    held = np.flatnonzero(np.isin(test_y, np.flatnonzero(part.declared[VICTIM])))
    x = np.concatenate([train_x[victim], test_x[held], train_x[others]])
    y = np.concatenate([train_y[victim], test_y[held], train_y[others]]).astype(np.int32)
    group = np.repeat([0, 1, 2], [len(victim), len(held), len(others)])
    return jnp.asarray(x), jnp.asarray(y), group


def secure(view, counts):
    """The view secure aggregation leaves: the example-weighted sum of the uploads."""
    w = counts.astype(jnp.float32)
    upload_sum = jax.tree.map(lambda u: jnp.tensordot(w, u, axes=1), view.uploads)
    return fj.ServerView(view.global_params, view.clients, None, upload_sum, jnp.sum(w))


def attack_round(apply_fn, view, x, y):
    """Per-round scores [n] of every per-round attack, and whether each was per-client."""
    out = {}
    for stat in ("loss", "cosine"):
        r = fj.fedmia_scores(apply_fn, view, x, y, VICTIM, statistic=stat, batch_size=200)
        out[f"fedmia_{stat}"] = (r.scores, r.per_client)
    r = fj.source_posterior(apply_fn, view, x, y, batch_size=200)
    out["source_inference"] = (r.scores[:, VICTIM], r.per_client)
    return out


def run_seed(seed, rounds, attack_rounds, per_group):
    data = fj.load_dataset("mnist", "bundled", max_train_per_class=_PER_CLASS.value)
    part = fj.clients_from_arrays(
        data.train_x, data.train_y, num_clients=N, adversary=ADVERSARY, victim=VICTIM, seed=seed,
        multiple_of=_BATCH.value if _PAD.value else 1,
    )  # fmt: skip
    model = fj.classifier("mnist")

    def apply_fn(p, x):
        return model.apply({"params": p}, x)

    fed = fj.federated_averaging(
        apply_fn, num_clients=N, local_epochs=_EPOCHS.value, batch_size=_BATCH.value,
        learning_rate=_LR.value, client_chunk=1, server_view="uploads",
    )  # fmt: skip
    x, y, group = candidates(data, part, np.random.default_rng(seed), per_group)
    server = fed.init(fj.init_params(model, jax.random.key(seed), x[:1]))
    step, attack = jax.jit(fed.round), jax.jit(attack_round, static_argnums=0)
    totals, flags_, t0 = {}, {}, time.time()
    for t in range(rounds):
        if t % 5 == 0:
            print(f"  seed {seed} round {t}: {time.time() - t0:.0f}s", flush=True)
        start = server.params
        server, metrics = step(server, part.clients, jax.random.fold_in(jax.random.key(seed), t))
        if t < rounds - attack_rounds:
            continue
        view = fj.server_view(start, metrics)
        for name, v in (("open", view), ("secure", secure(view, part.clients.counts))):
            for attack_name, (s, per_client) in attack(apply_fn, v, x, y).items():
                key = (attack_name, name)
                totals[key] = totals.get(key, 0.0) + np.asarray(s)
                flags_[key] = bool(per_client)
    calibrated = np.asarray(fj.loss_calibrated(apply_fn, server.params, x, y))
    logits = apply_fn(server.params, x)
    victim_labels = jnp.asarray(part.declared[VICTIM])
    mass = np.log(np.asarray(fj.victim_mass(logits, victim_labels)) + 1e-30)
    is_in = np.asarray(fj.decide(logits, victim_labels))
    accuracy = float((np.argmax(apply_fn(server.params, data.test_x), -1) == data.test_y).mean())
    for name in ("open", "secure"):
        totals[("loss_calibrated", name)], flags_[("loss_calibrated", name)] = calibrated, None
        totals[("label_rule", name)], flags_[("label_rule", name)] = mass, None
    return rows(totals, flags_, group, is_in, seed, accuracy)


def strict_keep(group, seed):
    """The strict protocol's targets among the candidates: the members, the other
    participants' records and a seeded sample of as many held-out records as members."""
    held = np.flatnonzero(group == 1)
    chosen = np.random.default_rng(seed).permutation(held)[: int((group == 0).sum())]
    keep = (group == 0) | (group == 2)
    keep[chosen] = True
    return keep


def rows(totals, flags_, group, is_in, seed, accuracy):
    out = []
    keeps = {
        "held_out": (group == 0) | (group == 1),
        "others": (group == 0) | (group == 2),
        "strict": strict_keep(group, seed),
    }
    for (attack, view), scores in totals.items():
        for against, keep in keeps.items():
            member = group[keep] == 0
            decisions = is_in[keep] if attack == "label_rule" else scores[keep] > 0
            m = fj.membership_metrics(member, scores[keep], decisions)
            out.append(
                dict(seed=seed, attack=attack, view=view, against=against,
                     per_client=flags_[(attack, view)], auc=m["auc"],
                     tpr_at_1pct_fpr=m["tpr_at_1pct_fpr"],
                     tpr_at_0_1pct_fpr=m["tpr_at_0.1pct_fpr"],
                     members=int(member.sum()), non_members=int((~member).sum()),
                     main_task_accuracy=accuracy)
            )  # fmt: skip
    return out


def table(all_rows):
    """Mean over seeds (and the range), one line per attack, view and protocol."""
    keys = sorted({(r["attack"], r["view"], r["against"]) for r in all_rows})
    lines = [
        "| attack | view | non-members | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR | per-client |",
        "|---|---|---|---|---|---|---|",
    ]
    for attack, view, against in keys:
        rs = [
            r for r in all_rows if (r["attack"], r["view"], r["against"]) == (attack, view, against)
        ]

        def cell(field, rs=rs):
            v = np.array([r[field] for r in rs])
            return f"{v.mean():.3f} [{v.min():.3f}, {v.max():.3f}]"

        lines.append(
            f"| {attack} | {view} | {against} | {cell('auc')} | {cell('tpr_at_1pct_fpr')} | "
            f"{cell('tpr_at_0_1pct_fpr')} | {rs[0]['per_client']} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    all_rows = []
    for seed in map(int, _SEEDS.value):
        t0 = time.time()
        all_rows += run_seed(seed, _ROUNDS.value, _ATTACK.value, _PER_GROUP.value)
        acc = all_rows[-1]["main_task_accuracy"]
        print(f"seed {seed}: {time.time() - t0:.0f}s, main-task accuracy {acc:.3f}", flush=True)
    print(table(all_rows))
    if _JSON.value:
        os.makedirs(os.path.dirname(_JSON.value) or ".", exist_ok=True)
        with open(_JSON.value, "w") as f:
            json.dump({"commit": commit.stdout.strip(), "argv": sys.argv, "rows": all_rows}, f)


if __name__ == "__main__":
    app.run(main)
