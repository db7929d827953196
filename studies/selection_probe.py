"""Which generator each selection rule keeps, and how good its attack classifier really is.

    python experiments/run.py --config=configs/demo_long.py --config.seed=10 \
        --config.gan.select_patience=0 --config.checkpoint.every=5 \
        --config.checkpoint.keep=1000 --workdir=runs/probe/seed10
    python studies/selection_probe.py --config=configs/demo_long.py --config.seed=10 \
        --config.gan.select_patience=0 --config.checkpoint.every=5 \
        --config.checkpoint.keep=1000 --workdir=runs/probe/seed10 --json=runs/probe/seed10.json
    python studies/selection_probe.py --compare=declared=runs/probe/seed10.json,... \
        --figure=docs/generator_trajectories.png

Reads back every checkpoint of a finished run (the same config flags as its launch; a
workdir of another config is refused). For the generator of each checkpoint round t after
the generator started it computes what the adversary can compute, label-free, at that
check: the own-class MMD (`gan_selection.own_class_mmd`) in pixel space and in the feature space of
the global model of round t, with the run's own selection keys. Then, as the experimenter,
the accuracy on the real test split of the attack classifier that D_gen from that
generator gives: labelled by the run's final global model, trained with the run's own
attack keys, exactly as the run's attack phase does with the generator it keeps.

It prints one row per round, and per rule (the lowest pixel score, the lowest feature
score, the last generator) the round it keeps and that accuracy, beside the best round any
rule could have kept (which needs the real labels: an upper bound, not an attack). With
``gan.select_patience=0`` the rules do not change the run's trajectory, so each rule's row
is what a run with that rule gives. Each row also carries the score the run itself logged
at that check (``logged_score``, under the run's own ``gan.select``): it equals the
recomputed score of that rule, and that rule's pick is the run's ``attack_model_accuracy``
(tests/test_report.py checks both).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments import launch  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "The run's config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's workdir (with its checkpoints).")
_JSON = flags.DEFINE_string("json", None, "Also write the rows and the rules here.")
_FIGURE = flags.DEFINE_string(
    "figure", None, "With --compare: draw the probes' rows against the round into this PNG."
)
_COMPARE = flags.DEFINE_list(
    "compare", None, "label=probe.json,...: draw earlier probes (--figure), compute nothing."
)

_POOL = flags.DEFINE_integer(
    "pool", 0, "K >= 2: also D_gen drawn in turn from the K generators each score ranks best."
)
_FIT = flags.DEFINE_enum(
    "fit", "every", ["every", "picks"],
    "Fit an attack classifier on every check's D_gen, or only on the rules' picks.",
)  # fmt: skip

_SAMPLES = flags.DEFINE_list(
    "samples", [], "With --fit=picks: also measure each pick and pool with D_gen of these "
    "many samples per class (gan.samples_per_class), e.g. 500,2500.",
)  # fmt: skip

RULES = ("pixel_mmd", "feature_mmd", "last")
SCORES = ("pixel_mmd", "feature_mmd")


def probe(config, workdir: str, *, fit_every=True, pool: int = 0, samples=()) -> dict:
    import jax

    from fedgan_jax.core.errors import WorkdirError
    from fedgan_jax.driver import experiment

    saved = experiment.read_back(config, workdir)
    trainer = _trainer_with(config, saved, config.gan.samples_per_class)
    feature_score = jax.jit(jax.vmap(lambda g, p, v, k: trainer.own_mmd(g, v, k, p)))
    pixel_score = jax.jit(jax.vmap(lambda g, v, k: trainer.own_mmd(g, v, k)))
    if not saved.rounds():
        raise WorkdirError(f"{workdir} holds no checkpoint")
    final = saved.state(saved.rounds()[-1]).adversary
    start = int(final.gan_start[0])
    if not start:
        raise WorkdirError(f"{workdir}: the run's generator never started, nothing to select")
    view, select_key = saved.view, saved.keys.adversary.select
    others = {n: Attack(saved, final, _trainer_with(config, saved, n)) for n in samples}
    reader, attack = Reader(saved, trainer), Attack(saved, final, trainer, others)
    logged = None if final.generator_score is None else jax.device_get(final.generator_score)[0]
    rows = []
    for t in (t for t in saved.rounds() if t >= start):
        adv = saved.state(t).adversary
        generator = adv.gan.generator
        row = {
            "round": t,
            "pixel_mmd": float(pixel_score(generator, view, select_key)[0]),
            "feature_mmd": float(feature_score(generator, adv.latest, view, select_key)[0]),
            "logged_score": None if logged is None else float(logged[t - 1]),
            **({"attack_accuracy": attack(generator)} if fit_every else {}),
            **reader(generator),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    picks = rules(rows, attack)
    if pool >= 2:
        picks.update(pooled(rows, attack, pool))
    return {"rows": rows, "rules": picks, "run": run_record(workdir)}


def _trainer_with(config, saved, samples_per_class: int):
    """The run's generator trainer, drawing `samples_per_class` per class for D_gen."""
    from fedgan_jax.driver import simulation
    from fedgan_jax.nn import models

    ds = saved.setup.dataset
    config = config.copy_and_resolve_references()
    config.gan.samples_per_class = samples_per_class
    classifier = models.classifier(ds.spec, saved.engine.resolved["conv_impl"])
    return simulation.gan_trainer(config, ds, classifier)


class Attack:
    """The experimenter's measure of a generator (or of a pool of them): the accuracy on
    the real test split of the attack classifier its D_gen gives, labelled by the run's
    final global model and trained with the run's own attack keys, exactly as the run's
    attack phase does with the generator it keeps."""

    def __init__(self, saved, final, trainer, others=None):
        import jax

        self.saved, self.final, self.key = saved, final, saved.keys.adversary.sample
        self.sample_pool = jax.jit(jax.vmap(trainer.sample_pool))
        self.sample = jax.jit(jax.vmap(trainer.sample))
        self.others: dict[int, Attack] = others or {}  # the same measures at other D_gen sizes

    def measure(self, rounds) -> dict:
        """The accuracy from the generator of round `rounds` (a pool: a list of rounds) and
        how many D_gen records it generated and f kept; ``by_samples``: the same at each
        D_gen size of `others`."""

        def one(attack):
            if isinstance(rounds, list):
                return attack.fit(attack.pool(rounds))
            return attack.fit(attack.dgen(self.saved.state(rounds).adversary.gan.generator))

        out = one(self)
        if self.others:
            out["by_samples"] = {str(n): one(a) for n, a in self.others.items()}
        return out

    def __call__(self, generator) -> float:
        return self.fit(self.dgen(generator))["attack_accuracy"]

    def dgen(self, generator):
        gan_state = self.final.gan.replace(generator=generator)
        return self.sample(gan_state, self.final.latest, self.saved.view, self.key)

    def pool(self, rounds):
        """D_gen from the generators of `rounds`, in turn (`gan.sample_pool`)."""
        import jax
        import jax.numpy as jnp

        generators = [self.saved.state(t).adversary.gan.generator for t in rounds]
        stacked = jax.tree.map(lambda *a: jnp.stack(a, axis=1), *generators)  # [R, K, ...]
        return self.sample_pool(stacked, self.final.latest, self.saved.view, self.key)

    def fit(self, dgen) -> dict:
        import jax.numpy as jnp
        import numpy as np

        engine, ds = self.saved.engine, self.saved.setup.dataset
        clf, _ = engine.adversary.fit_dgen(self.saved.keys.adversary.attack, dgen)
        logits = np.asarray(engine.adversary.pool_logits(clf, jnp.asarray(ds.test_x)))[0]
        accuracy = float((logits.argmax(-1) == np.asarray(ds.test_y)).mean())
        kept, generated = int(np.asarray(dgen.count)[0]), int(dgen.x.shape[1])
        return {"attack_accuracy": accuracy, "dgen_kept": kept, "dgen_generated": generated}


class Reader:
    """How the experimenter's oracle (a classifier trained on the real training records of
    every class, `simulation.oracle_attack`'s) reads a generator's samples: the share it
    assigns to the class G was asked for, among the victim's classes and among all
    declared classes, and the share of the victim's classes it reads as one of the
    adversary's *own* classes (samples drifting towards the only real digits the prior's
    discriminator knows)."""

    def __init__(self, saved, trainer):
        import jax
        import numpy as np

        ds, engine = saved.setup.dataset, saved.engine
        x, y = jax.numpy.asarray(ds.train_x), jax.numpy.asarray(ds.train_y)
        self.oracle, _ = engine.evaluation.fit_oracle(saved.keys.evaluation.oracle, x, y)
        self.logits = engine.evaluation.logits
        self.images = jax.jit(lambda g, k: trainer.images(g, k, 64))
        self.key = jax.random.key(0)
        view = jax.tree.map(lambda a: np.asarray(a)[0], saved.view)
        self.victim = np.asarray(view.victim_labels)
        self.own = np.asarray(view.declared[int(view.adversary)])
        self.declared = np.asarray(view.declared.any(0))

    def __call__(self, generator) -> dict:
        import jax
        import numpy as np

        x = self.images(jax.tree.map(lambda a: a[0], generator), self.key)  # [C, 64, ...]
        c, n = x.shape[:2]
        pred = np.asarray(self.logits(self.oracle, x.reshape(c * n, *x.shape[2:]))[0])
        pred = pred.argmax(-1).reshape(c, n)
        hit = (pred == np.arange(c)[:, None]).mean(1)
        as_own = self.own[pred].mean(1)
        return {
            "oracle_reads_victim": float(hit[self.victim].mean()),
            "oracle_reads_declared": float(hit[self.declared].mean()),
            "victim_read_as_own": float(as_own[self.victim].mean()),
        }


def rules(rows: list[dict], attack=None) -> dict:
    """The round each rule keeps (the first lowest score) and its accuracy; without a fit
    of every check (`attack` then fits the picks), no best-check bound."""
    picks = {
        "pixel_mmd": min(rows, key=lambda r: r["pixel_mmd"]),
        "feature_mmd": min(rows, key=lambda r: r["feature_mmd"]),
        "last": rows[-1],
    }
    if "attack_accuracy" in rows[0]:
        picks["best (needs real labels)"] = max(rows, key=lambda r: r["attack_accuracy"])
        return {k: {f: r[f] for f in ("round", "attack_accuracy")} for k, r in picks.items()}
    fitted = {t: attack.measure(t) for t in sorted({r["round"] for r in picks.values()})}
    return {k: {"round": r["round"], **fitted[r["round"]]} for k, r in picks.items()}


def pooled(rows: list[dict], attack, k: int) -> dict:
    """Per score: D_gen drawn in turn from the `k` generators it ranks best over the run
    (what a pool of the k best checks so far holds at the end)."""
    out = {}
    for score in SCORES:
        best = sorted(rows, key=lambda r: r[score])[:k]
        rounds = [r["round"] for r in best]
        out[f"{score}_pool{k}"] = {"round": rounds, **attack.measure(rounds)}
    return out


def run_record(workdir: str) -> dict:
    path = os.path.join(workdir, "results.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        r = json.load(f)
    return {
        "attack_model_accuracy": r.get("attack_model_accuracy"),
        "global_model_accuracy": r.get("global_model_accuracy"),
        "kept_round": (r.get("generator_selection") or {}).get("round"),
    }


def compare(specs: list[str], figure: str) -> None:
    from fedgan_jax.evaluation import plots

    probes, accuracy = {}, []
    for spec in specs:
        label, _, path = spec.partition("=")
        if not path or not os.path.isfile(path):
            raise SystemExit(f"--compare: {spec!r} is not label=probe.json of an existing file")
        with open(path) as f:
            out = json.load(f)
        probes[label] = out["rows"]
        accuracy.append(out["run"].get("global_model_accuracy") or 0.0)
    plots.generator_trajectories(figure, probes, global_accuracy=max(accuracy))
    print(f"wrote {figure}")


def main(argv):
    del argv
    if _COMPARE.value:
        if not _FIGURE.value:
            raise SystemExit("--compare needs --figure")
        return compare(_COMPARE.value, _FIGURE.value)
    if not (_CONFIG.value and _WORKDIR.value):
        raise SystemExit("--config and --workdir are required (or --compare and --figure)")
    fit_every = _FIT.value == "every"
    if _SAMPLES.value and fit_every:
        raise SystemExit("--samples needs --fit=picks")
    out = launch.guarded(
        lambda: probe(
            _CONFIG.value,
            _WORKDIR.value,
            fit_every=fit_every,
            pool=_POOL.value,
            samples=[int(n) for n in _SAMPLES.value],
        )  # fmt: skip
    )
    run = out["run"]
    print(
        f"\n{_WORKDIR.value}: the run kept round {run.get('kept_round')}, attack classifier "
        f"{run.get('attack_model_accuracy')}, global model {run.get('global_model_accuracy')}"
    )
    print("| rule | round kept | attack classifier accuracy |\n|---|---|---|")
    for name, pick in out["rules"].items():
        rounds = pick["round"] if isinstance(pick["round"], int) else str(pick["round"])[1:-1]
        print(f"| {name} | {rounds} | {pick['attack_accuracy']:.3f} |")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    comparing = any(arg.startswith("--compare") for arg in sys.argv[1:])
    launch.run(main, configs=() if comparing else ("config",))
