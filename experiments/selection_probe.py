"""Which generator each selection rule keeps, and how good its attack classifier really is.

    python experiments/run.py --config=configs/demo_long.py --config.seed=10 \
        --config.gan.select_patience=0 --config.checkpoint.every=5 \
        --config.checkpoint.keep=1000 --workdir=runs/probe/seed10
    python experiments/selection_probe.py --config=configs/demo_long.py --config.seed=10 \
        --config.gan.select_patience=0 --config.checkpoint.every=5 \
        --config.checkpoint.keep=1000 --workdir=runs/probe/seed10 --json=runs/probe/seed10.json
    python experiments/selection_probe.py --compare=declared=runs/probe/seed10.json,... \
        --figure=docs/generator_trajectories.png

Reads back every checkpoint of a finished run (the same config flags as its launch; a
workdir of another config is refused). For the generator of each checkpoint round t after
the generator started it computes what the adversary can compute, label-free, at that
check: the own-class MMD (`gan.own_class_mmd`) in pixel space and in the feature space of
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

RULES = ("pixel_mmd", "feature_mmd", "last")


def probe(config, workdir: str) -> dict:
    import jax
    import numpy as np

    from fedgan_jax import experiment, models, simulation
    from fedgan_jax.errors import WorkdirError

    saved = experiment.read_back(config, workdir)
    engine, view, keys = saved.engine, saved.view, saved.keys.adversary
    ds = saved.setup.dataset
    classifier = models.classifier(ds.spec, engine.resolved["conv_impl"])
    trainer = simulation.gan_trainer(config, ds, classifier)
    feature_score = jax.jit(jax.vmap(lambda g, p, v, k: trainer.own_mmd(g, v, k, p)))
    pixel_score = jax.jit(jax.vmap(lambda g, v, k: trainer.own_mmd(g, v, k)))
    if not saved.rounds():
        raise WorkdirError(f"{workdir} holds no checkpoint")
    final = saved.state(saved.rounds()[-1]).adversary
    start = int(final.gan_start[0])
    if not start:
        raise WorkdirError(f"{workdir}: the run's generator never started, nothing to select")
    test_x, test_y = jax.numpy.asarray(ds.test_x), np.asarray(ds.test_y)
    reader = Reader(saved, trainer)
    logged = None if final.generator_score is None else np.asarray(final.generator_score)[0]
    rows = []
    for t in (t for t in saved.rounds() if t >= start):
        adv = saved.state(t).adversary
        gan_state = final.gan.replace(generator=adv.gan.generator)
        dgen = engine.adversary.sample(gan_state, final.latest, view, keys.sample)
        clf, _ = engine.adversary.fit_dgen(keys.attack, dgen)
        logits = np.asarray(engine.adversary.pool_logits(clf, test_x))[0]
        generator = adv.gan.generator
        row = {
            "round": t,
            "pixel_mmd": float(pixel_score(generator, view, keys.select)[0]),
            "feature_mmd": float(feature_score(generator, adv.latest, view, keys.select)[0]),
            "logged_score": None if logged is None else float(logged[t - 1]),
            "attack_accuracy": float((logits.argmax(-1) == test_y).mean()),
            **reader(generator),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"rows": rows, "rules": rules(rows), "run": run_record(workdir)}


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


def rules(rows: list[dict]) -> dict:
    """The round each rule keeps (the first lowest score) and its accuracy."""
    picks = {
        "pixel_mmd": min(rows, key=lambda r: r["pixel_mmd"]),
        "feature_mmd": min(rows, key=lambda r: r["feature_mmd"]),
        "last": rows[-1],
        "best (needs real labels)": max(rows, key=lambda r: r["attack_accuracy"]),
    }
    return {k: {f: r[f] for f in ("round", "attack_accuracy")} for k, r in picks.items()}


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
    from fedgan_jax import plots

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
    out = launch.guarded(lambda: probe(_CONFIG.value, _WORKDIR.value))
    run = out["run"]
    print(
        f"\n{_WORKDIR.value}: the run kept round {run.get('kept_round')}, attack classifier "
        f"{run.get('attack_model_accuracy')}, global model {run.get('global_model_accuracy')}"
    )
    print("| rule | round kept | attack classifier accuracy |\n|---|---|---|")
    for name, pick in out["rules"].items():
        print(f"| {name} | {pick['round']} | {pick['attack_accuracy']:.3f} |")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    comparing = any(arg.startswith("--compare") for arg in sys.argv[1:])
    launch.run(main, configs=() if comparing else ("config",))
