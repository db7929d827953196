"""The active gradient-ascent attack two ways, from one federation per seed.

    python studies/ascent_side_by_side.py --seeds=0,1,2

Two constructions of Nasr et al.'s active attack by a FedAvg participant on the demo
federation (bundled MNIST, 5 participants, the victim k=2 labels, adversary 0, victim 1):

* the *prototype*'s (`prototype_scores`, a line-by-line transcription of the reference
  script): after T honest rounds it plays one more honest round (key T+1), adds an ascent
  step along the gradient of the summed loss of its targets at M_T, sized to the norm of
  that round's global update, plays a further honest round (key T+2) and scores the
  relative loss drop between the two models;
* the *engine*'s (``adversary.upload=gradient_ascent`` with the ``gradient_ascent``
  attack): the adversary's slot of round a=T+1 runs `driver.simulation.adversary_upload`
  (its honest update on its own upload key, plus a step up the mean target loss sized to
  the last global update it saw), round a+1 is honest, both on the run's seeded key
  streams; the score is `membership.loss_drop` (the relative drop standardised per class
  over the candidate pool) combined with the label rule (`membership.user_level`),
  evaluated on members against held-out records of the victim's classes.

Both are computed from the same honest rounds (the prototype's: init key ``seed``, round t
on key ``1000 * seed + t``), and every row of the table changes one element of the
construction (`Variant`), or accumulates them from the prototype's to the engine's. The
first row must repeat the prototype's printed numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import demo_membership  # noqa: E402
from fedgan_jax.adversary import attack, membership, uploads
from fedgan_jax.data import datasets as data
from fedgan_jax.data import partition
from fedgan_jax.driver.simulation import adversary_upload  # noqa: E402
from fedgan_jax.driver.state import derive_keys, round_key  # noqa: E402
from fedgan_jax.evaluation import metrics
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.nn import models

NUM_PARTICIPANTS, ADVERSARY, VICTIM, VICTIM_LABELS = 5, 0, 1, 2
LEARNING_RATE = 0.05


# --- the prototype, transcribed -------------------------------------------------------


def prototype_label_expression(declared: np.ndarray) -> list[int]:
    """The prototype's "victim labels" expression, verbatim. With the boolean
    ``declared[N, C]`` of `partition.deal_labels` it compares booleans with the integers
    0..9, so it returns [0, 1] (a False and a True are in the row) whatever the victim
    declared."""
    return (
        [label for label in range(10) if (np.asarray(declared)[1] == label).any()]
        if np.ndim(declared) == 2
        else list(declared[1])
    )


def prototype_scores(ds: data.Dataset, seed: int, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference script's ``active: relative drop x1.0`` scores and its membership
    truth, in its order (members, then its non-members): its own lines, library calls as
    it makes them, nothing shared with `Variant` (the test compares the two)."""
    roles = partition.Roles(NUM_PARTICIPANTS, ADVERSARY, VICTIM, VICTIM_LABELS)
    declared = partition.deal_labels(10, roles, seed=seed)
    clients, owner = partition.partition(ds.train_x, ds.train_y, declared, multiple_of=64)
    model = models.classifier("mnist")

    def apply_fn(p, x):
        return model.apply({"params": p}, x)

    params = models.init_params(model, jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
    update = federated.make_client_update(apply_fn, local_epochs=1, batch_size=64)
    round_fn = jax.jit(federated.make_round(update, num_clients=5))
    c = jax.tree.map(jnp.asarray, clients)
    victim_labels = prototype_label_expression(declared)
    mem_x, mem_y = ds.train_x[owner == 1], ds.train_y[owner == 1]
    sel = np.isin(ds.test_y, victim_labels)
    non_x, non_y = ds.test_x[sel], ds.test_y[sel]
    tx = jnp.asarray(np.concatenate([mem_x, non_x]))
    ty = jnp.asarray(np.concatenate([mem_y, non_y]))
    is_mem = np.r_[np.ones(len(mem_x)), np.zeros(len(non_x))].astype(bool)

    @jax.jit
    def losses(p):
        lg = apply_fn(p, tx)
        return -jnp.take_along_axis(jax.nn.log_softmax(lg), ty[:, None], 1)[:, 0]

    grad_total = jax.jit(jax.grad(lambda p: losses(p).sum()))
    counts = np.asarray(clients.counts)
    w_adv = counts[0] / counts.sum()
    for t in range(rounds):
        params, _ = round_fn(params, c, jax.random.key(1000 * seed + t + 1), 0.05)
    honest1, _ = round_fn(params, c, jax.random.key(rounds + 1), 0.05)
    g = grad_total(params)
    gnorm = float(jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(g))))
    upd = jax.tree.map(lambda a, b: a - b, honest1, params)
    unorm = float(jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(upd))))
    gamma = 1.0 * unorm / gnorm / w_adv
    mal = jax.tree.map(lambda h, gg: h + w_adv * gamma * gg, honest1, g)
    l1 = losses(mal)
    nxt, _ = round_fn(mal, c, jax.random.key(rounds + 2), 0.05)
    l2 = losses(nxt)
    return np.asarray((l1 - l2) / (l1 + 1e-6)), is_mem


# --- one federation per seed ----------------------------------------------------------


def _prototype_losses(apply_fn, p, x, y):
    """The prototype's per-record loss (its ``losses``), on records passed in."""
    lg = apply_fn(p, x)
    return -jnp.take_along_axis(jax.nn.log_softmax(lg), y[:, None], 1)[:, 0]


class Programs(NamedTuple):
    """The compiled functions, the same for every seed (built once: `programs`)."""

    apply_fn: Callable  # (params, x) -> logits, not jitted (for `make_round`)
    apply: Callable  # jitted apply_fn
    honest_round: Callable  # make_round(num_clients=5), every client honest
    upload_round: Callable  # make_round with the engine's gradient_ascent upload
    losses: Callable  # (params, x, y) -> the prototype's per-record losses
    grad_sum: Callable  # (params, x, y) -> gradient of their sum


@functools.cache
def programs() -> Programs:
    model = models.classifier("mnist")

    def apply_fn(p, x):
        return model.apply({"params": p}, x)

    update = federated.make_client_update(apply_fn, local_epochs=1, batch_size=64)
    config = demo_membership.get_config()
    config.adversary.upload = "gradient_ascent"
    malicious = adversary_upload(config, apply_fn, None)
    losses = functools.partial(_prototype_losses, apply_fn)
    return Programs(
        apply_fn=apply_fn,
        apply=jax.jit(apply_fn),
        honest_round=jax.jit(federated.make_round(update, num_clients=NUM_PARTICIPANTS)),
        upload_round=jax.jit(
            federated.make_round(
                update,
                num_clients=NUM_PARTICIPANTS,
                client_chunk=1,  # clients in sequence: the adversary's branch runs alone
                adversary=ADVERSARY,
                adversary_update=malicious,
            )
        ),
        losses=jax.jit(losses),
        grad_sum=jax.jit(jax.grad(lambda p, x, y: losses(p, x, y).sum())),
    )


@dataclasses.dataclass
class Federation:
    """The honest rounds 1..T of one seed, and what either construction needs."""

    seed: int
    rounds: int  # T: the ascent round is a = T + 1
    ds: data.Dataset
    declared: np.ndarray  # [N, C] bool
    owner: np.ndarray  # [n_train] participant of each training record
    clients: partition.ClientData  # on device
    programs: Programs
    previous: dict  # M_{T-1}
    params: dict  # M_T
    w_adv: float  # the adversary's FedAvg weight

    @property
    def victim_mask(self) -> np.ndarray:
        return np.asarray(self.declared[VICTIM], bool)

    @property
    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        """The engine's candidate pool: every training record, then every test record."""
        ds = self.ds
        return np.concatenate([ds.train_x, ds.test_x]), np.concatenate([ds.train_y, ds.test_y])

    def engine_keys(self):
        """The engine's key streams of this seed (`state.derive_keys`): server fl, upload."""
        server, adversary, _ = derive_keys(jnp.stack([jax.random.key(self.seed)]))
        return server.fl[0], adversary.upload[0]


def build_federation(seed: int, rounds: int, ds: data.Dataset | None = None) -> Federation:
    """The prototype's federation, through the library: its deal, partition, model, init
    and honest round keys (``1000 * seed + t``, t = 1..T)."""
    ds = ds if ds is not None else data.load_dataset("mnist", "bundled")
    roles = partition.Roles(NUM_PARTICIPANTS, ADVERSARY, VICTIM, VICTIM_LABELS)
    declared = partition.deal_labels(10, roles, seed=seed)
    clients, owner = partition.partition(ds.train_x, ds.train_y, declared, multiple_of=64)
    model = models.classifier("mnist")
    params = models.init_params(model, jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))
    progs = programs()
    c = jax.tree.map(jnp.asarray, clients)
    previous = params
    for t in range(rounds):
        previous = params
        params, _ = progs.honest_round(
            params, c, jax.random.key(1000 * seed + t + 1), LEARNING_RATE
        )
    counts = np.asarray(clients.counts)
    return Federation(
        seed=seed,
        rounds=rounds,
        ds=ds,
        declared=declared,
        owner=owner,
        clients=c,
        programs=progs,
        previous=previous,
        params=params,
        w_adv=float(counts[ADVERSARY] / counts.sum()),
    )


# --- the elements of a construction ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """One construction; the defaults are the prototype's.

    non_members: "prototype" = test records of the classes `prototype_label_expression`
        gives ([0, 1]); "victim" = test records of the victim's declared classes.
    targets: whose summed loss the step ascends: "prototype" = members + the prototype's
        non-members (its ``tx``); "victim" = every candidate of the victim's declared
        classes (the engine's ``ascent_targets=victim_classes``).
    gamma: the step in global-update norms (0: no step, the passive control).
    direction: "ascent" (+gradient), "descent" (-gradient), "random" (a seeded Gaussian
        direction of the gradient's norm); prototype round only.
    size: the global-update norm the step is sized to: "current" = round a's own honest
        global update (the prototype's ``honest1 - params``, which the adversary cannot
        see before it uploads); "last" = M_T - M_{T-1}, the last one it saw (the engine).
    round_a: "prototype" = the honest round a on key T+1 plus w_adv * step (the
        adversary's honest part trained on the round's key); "engine" = round a with the
        engine's upload in the adversary's slot (`driver.simulation.adversary_upload`: its own
        upload key, the gradient of the mean target loss), on the seed's key streams.
    next_key: round a+1's key: "prototype" = ``key(T+2)`` (the same for every seed);
        "engine" = the seed's server stream at round a+1.
    score: "relative" = (l_a - l_{a+1}) / l_a (the prototype); "z" = the same
        standardised per class over the candidate pool (`membership.loss_drop`).
    label: add the label rule (`membership.user_level`, under M_{a+1}); needs score "z".
    """

    non_members: str = "prototype"
    targets: str = "prototype"
    gamma: float = 1.0
    direction: str = "ascent"
    size: str = "current"
    round_a: str = "prototype"
    next_key: str = "prototype"
    score: str = "relative"
    label: bool = False

    def __post_init__(self):
        if self.label and self.score != "z":
            raise ValueError("the label term combines with the z score only")
        if self.round_a == "engine" and self.direction == "random":
            raise ValueError("the engine's upload steps along its own gradient")


PROTOTYPE = Variant()
ENGINE = Variant(
    non_members="victim",
    targets="victim",
    size="last",
    round_a="engine",
    next_key="engine",
    score="z",
    label=True,
)


def _replace(v: Variant, **kw) -> Variant:
    return dataclasses.replace(v, **kw)


FIXED = _replace(PROTOTYPE, non_members="victim", targets="victim")
ROWS: tuple[tuple[str, Variant], ...] = (
    ("prototype (as printed)", PROTOTYPE),
    ("prototype, no step (gamma 0)", _replace(PROTOTYPE, gamma=0.0)),
    ("prototype, descent (-gradient)", _replace(PROTOTYPE, direction="descent")),
    ("prototype, random direction", _replace(PROTOTYPE, direction="random")),
    ("prototype + non-members of victim's classes", _replace(PROTOTYPE, non_members="victim")),
    ("prototype + targets of victim's classes", _replace(PROTOTYPE, targets="victim")),
    ("prototype + step sized to last update", _replace(PROTOTYPE, size="last")),
    ("prototype + engine's round a", _replace(PROTOTYPE, round_a="engine")),
    ("prototype + seeded key of round a+1", _replace(PROTOTYPE, next_key="engine")),
    ("prototype + per-class z", _replace(PROTOTYPE, score="z")),
    ("prototype + per-class z + label term", _replace(PROTOTYPE, score="z", label=True)),
    ("A: victim's classes (sets and targets)", FIXED),
    ("A, no step (gamma 0)", _replace(FIXED, gamma=0.0)),
    ("A, step x3", _replace(FIXED, gamma=3.0)),
    ("B: A + step sized to last update", _replace(FIXED, size="last")),
    ("C: B + engine's round a", _replace(FIXED, size="last", round_a="engine")),
    (
        "D: C + seeded key of round a+1",
        _replace(FIXED, size="last", round_a="engine", next_key="engine"),
    ),
    (
        "E: D + per-class z",
        _replace(FIXED, size="last", round_a="engine", next_key="engine", score="z"),
    ),
    ("engine (E + label term)", ENGINE),
    ("engine, no step (gamma 0)", _replace(ENGINE, gamma=0.0)),
    ("engine on the prototype's non-members", _replace(ENGINE, non_members="prototype")),
    (
        "engine on the prototype's sets and targets",
        _replace(ENGINE, non_members="prototype", targets="prototype"),
    ),
)


# --- computing one variant --------------------------------------------------------------


def _norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(tree))))


class Study:
    """Both constructions on one federation; rounds a and a+1 are cached per variant
    elements that determine them, so variants share them."""

    def __init__(self, fed: Federation):
        self.fed = fed
        ds = fed.ds
        n_train = len(ds.train_y)
        self.members = np.flatnonzero(fed.owner == VICTIM)
        proto_labels = prototype_label_expression(fed.declared)
        self.non_index = {
            "prototype": n_train + np.flatnonzero(np.isin(ds.test_y, proto_labels)),
            "victim": n_train + np.flatnonzero(fed.victim_mask[ds.test_y]),
        }
        pool_x, pool_y = fed.pool
        self.pool_x, self.pool_y = pool_x, pool_y
        self.target_index = {
            "prototype": np.concatenate([self.members, self.non_index["prototype"]]),
            "victim": np.flatnonzero(fed.victim_mask[pool_y]),
        }
        self.progs = fed.programs
        self._grads = {}
        self._rounds = {}
        self._logits = {}
        self.fl_stream, self.upload_stream = fed.engine_keys()

    def _pool_logits(self, params, chunk: int = 1000) -> jax.Array:
        """Logits of every candidate ``[n_pool, C]`` (in chunks, as the engine's pool);
        kept per model (variants share their models)."""
        k = id(params)
        if k not in self._logits:
            x, apply = self.pool_x, self.progs.apply
            self._logits[k] = (
                params,  # holds the id
                jnp.concatenate(
                    [apply(params, jnp.asarray(x[i : i + chunk])) for i in range(0, len(x), chunk)]
                ),
            )
        return self._logits[k][1]

    def _records(self, index: np.ndarray):
        return jnp.asarray(self.pool_x[index]), jnp.asarray(self.pool_y[index])

    def eval_index(self, non_members: str) -> np.ndarray:
        """Pool indices of the evaluated records: members, then the non-members."""
        return np.concatenate([self.members, self.non_index[non_members]])

    def is_member(self, non_members: str) -> np.ndarray:
        n = len(self.non_index[non_members])
        return np.r_[np.ones(len(self.members), bool), np.zeros(n, bool)]

    def gradient(self, targets: str):
        """The gradient of the targets' summed loss at M_T (the prototype's ``g``)."""
        if targets not in self._grads:
            x, y = self._records(self.target_index[targets])
            self._grads[targets] = self.progs.grad_sum(self.fed.params, x, y)
        return self._grads[targets]

    def _round(self, key, params, inputs=None):
        fed, progs = self.fed, self.progs
        if inputs is None:
            return progs.honest_round(params, fed.clients, key, LEARNING_RATE)[0]
        return progs.upload_round(params, fed.clients, key, LEARNING_RATE, inputs)[0]

    def round_a_key(self, v: Variant):
        a = self.fed.rounds + 1
        if v.round_a == "prototype":
            return jax.random.key(a)
        return round_key(self.fl_stream, a)

    def honest_a(self, v: Variant):
        """Round a with every client honest, on round a's key of this variant."""
        k = ("honest", v.round_a)
        if k not in self._rounds:
            self._rounds[k] = self._round(self.round_a_key(v), self.fed.params)
        return self._rounds[k]

    def step_norm(self, v: Variant) -> float:
        """The global-update norm the step is sized to (`Variant.size`)."""
        fed = self.fed
        if v.size == "last":
            return _norm(jax.tree.map(jnp.subtract, fed.params, fed.previous))
        return _norm(jax.tree.map(jnp.subtract, self.honest_a(v), fed.params))

    def model_a(self, v: Variant):
        """M_a: the global model after the malicious round a."""
        k = ("a", v.targets, v.gamma, v.direction, v.size, v.round_a)
        if k in self._rounds:
            return self._rounds[k]
        fed = self.fed
        if v.round_a == "prototype":
            honest = self.honest_a(v)
            g = self.gradient(v.targets)
            gnorm = _norm(g)
            if v.direction == "descent":
                g = jax.tree.map(jnp.negative, g)
            elif v.direction == "random":
                leaves, tree = jax.tree.flatten(g)
                keys = jax.random.split(jax.random.key(10_000 + fed.seed), len(leaves))
                noise = [
                    jax.random.normal(k_, a.shape, a.dtype)
                    for k_, a in zip(keys, leaves, strict=True)
                ]
                r = jax.tree.unflatten(tree, noise)
                g = jax.tree.map(lambda a: a * (gnorm / _norm(r)), r)
            gamma = v.gamma * self.step_norm(v) / gnorm / fed.w_adv
            model = jax.tree.map(lambda h, gg: h + fed.w_adv * gamma * gg, honest, g)
        else:
            a = fed.rounds + 1
            # the engine passes the whole pool with weight 1 on the targets, 0 elsewhere; the
            # targets alone with weight 1 are the same mean loss, on fewer records
            x, y = self._records(self.target_index[v.targets])
            sign = -1.0 if v.direction == "descent" else 1.0
            inputs = uploads.AscentInputs(
                key=round_key(self.upload_stream, a),
                targets_x=x,
                targets_y=y,
                weight=jnp.ones(y.shape, jnp.float32),
                # adversary.upload_inputs: gamma x N x the global-update norm
                step=jnp.float32(sign * v.gamma * NUM_PARTICIPANTS * self.step_norm(v)),
            )
            model = self._round(self.round_a_key(v), fed.params, inputs)
        self._rounds[k] = model
        return model

    def model_next(self, v: Variant):
        """M_{a+1}: one honest round after M_a."""
        k = ("next", v.targets, v.gamma, v.direction, v.size, v.round_a, v.next_key)
        if k not in self._rounds:
            a = self.fed.rounds + 1
            key = (
                jax.random.key(a + 1)
                if v.next_key == "prototype"
                else round_key(self.fl_stream, a + 1)
            )
            self._rounds[k] = self._round(key, self.model_a(v))
        return self._rounds[k]

    def scores(self, v: Variant) -> tuple[np.ndarray, np.ndarray]:
        """(scores, is_member) over the evaluated records (members, then non-members)."""
        m_a, m_next = self.model_a(v), self.model_next(v)
        truth = self.is_member(v.non_members)
        if v.score == "relative":
            x, y = self._records(self.eval_index(v.non_members))
            l1, l2 = self.progs.losses(m_a, x, y), self.progs.losses(m_next, x, y)
            return np.asarray((l1 - l2) / (l1 + 1e-6)), truth
        labels = jnp.asarray(self.pool_y)
        before = attack.record_losses(self._pool_logits(m_a), labels)
        logits_next = self._pool_logits(m_next)
        after = attack.record_losses(logits_next, labels)
        z = membership.loss_drop(before[None], after[None], labels, self.fed.ds.num_classes)
        index = self.eval_index(v.non_members)
        if not v.label:
            return np.asarray(z)[index], truth
        score, _ = membership.user_level(
            logits_next[index], jnp.asarray(self.fed.victim_mask), z[index]
        )
        return np.asarray(score), truth

    def accuracy_a(self, v: Variant) -> float:
        """The main-task test accuracy of M_a (what the step costs)."""
        n_train = len(self.fed.ds.train_y)
        logits = np.asarray(self._pool_logits(self.model_a(v)))[n_train:]
        return float((logits.argmax(-1) == self.fed.ds.test_y).mean())


def evaluate(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(AUC, TPR at 1% FPR), `fedgan_jax.evaluation.metrics`."""
    fpr, tpr, _ = metrics.roc_curve(truth, scores)
    return metrics.auc(fpr, tpr), metrics.tpr_at_fpr(fpr, tpr, 0.01)


# --- the table --------------------------------------------------------------------------

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: one federation each.")
_ROUNDS = flags.DEFINE_integer("rounds", 60, "Honest rounds T before the ascent round.")
_MAX_TRAIN = flags.DEFINE_integer(
    "max_train_per_class", 0, "Bundled training images kept per class (0: all 400)."
)


def table(rows, results, seeds) -> str:
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"| variant | AUC: {head} | mean | TPR@1%FPR: {head} | mean | acc. M_a (mean) |",
        "|---|" + "---|" * (2 * len(seeds) + 3),
    ]
    for name, _ in rows:
        per = results[name]
        auc = [per[s][0] for s in seeds]
        tpr = [per[s][1] for s in seeds]
        acc = np.mean([per[s][2] for s in seeds])
        cells = [f"{x:.3f}" for x in auc] + [f"{np.mean(auc):.3f}"]
        cells += [f"{x:.3f}" for x in tpr] + [f"{np.mean(tpr):.3f}", f"{acc:.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    seeds = [int(s) for s in _SEEDS.value]
    ds = data.load_dataset("mnist", "bundled", max_train_per_class=_MAX_TRAIN.value)
    results = {name: {} for name, _ in ROWS}
    for seed in seeds:
        tic = time.perf_counter()
        fed = build_federation(seed, _ROUNDS.value, ds)
        study = Study(fed)
        victim = np.flatnonzero(fed.victim_mask).tolist()
        proto = prototype_label_expression(fed.declared)
        print(
            f"seed {seed}: victim's classes {victim}, the prototype's non-member classes "
            f"{proto}; {len(study.members)} members, "
            f"{len(study.non_index['victim'])} held-out of the victim's classes",
            flush=True,
        )
        for name, v in ROWS:
            auc, tpr = evaluate(*study.scores(v))
            results[name][seed] = (auc, tpr, study.accuracy_a(v))
        print(f"seed {seed}: {time.perf_counter() - tic:.0f} s", flush=True)
    print()
    print(table(ROWS, results, seeds))


if __name__ == "__main__":
    app.run(main)
