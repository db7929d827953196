"""One batch of runs end to end: federation, adversary, attacks (paper Fig. 2).

The host loop is thin; every step is a compiled function over the run axis:

    for t in 1..T:   server   <- round(server, clients, adversary's upload)   FedAvg
                     log      <- evaluate(M_t) on the test split                 (Fig. 5)
                     adversary <- observe(adversary, M_t, announced accuracy)   (gan.py)
    attacks:         the adversary's (`adversary_attacks.attack_targets`, its view only),
                     then the evaluation-side oracle, every score over the same pool of records

Each role's function receives its own state and keys (`state.py`): the server never reads
the adversary's state, and the adversary never sees the server's state, keys or the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedgan_jax.adversary import gan, label_recovery, membership, uploads
from fedgan_jax.core.errors import NonFiniteError
from fedgan_jax.core.types import Config
from fedgan_jax.data.datasets import Dataset
from fedgan_jax.driver import adversary as adv
from fedgan_jax.driver import (
    adversary_attacks,
    adversary_plan,
    adversary_program,
    collusion,
    shadows,
)
from fedgan_jax.driver.engine import (
    EvalProgram,
    ServerProgram,
    Setup,
    apply_fn_of,
    build_eval,
    build_server,
    client_recipe,
    clients_per_round,
    make_mesh,
    mesh_devices,
    resolved_settings,
)
from fedgan_jax.driver.state import (
    AdversaryKeys,
    EvalKeys,
    RunState,
    ServerKeys,
    ServerState,
    derive_keys,
    eval_log,
    put_row,
)
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.nn import models


class Engine(NamedTuple):
    """The compiled programs of one config for batches of `num_runs` runs."""

    server: ServerProgram
    upload: ServerProgram | None  # rounds with the adversary's malicious upload (None: honest)
    adversary: adversary_program.AdversaryProgram
    evaluation: EvalProgram
    plan: adversary_plan.Plan
    mesh: Any
    resolved: dict[str, Any]  # what 'auto' resolved to (recorded with the workdir)
    num_runs: int


def build_engine(config: Config, dataset: Dataset, num_runs: int) -> Engine:
    """Built once per config and reused: every run of a sweep has the same shapes."""
    classifier = models.classifier(dataset.spec, config.model.conv_impl)
    mesh = make_mesh(mesh_devices(config))
    shape = dataset.image_shape
    trainer = gan_trainer(config, dataset, classifier)
    malicious = adversary_upload(config, apply_fn_of(classifier), trainer.images)
    return Engine(
        server=build_server(config, classifier, shape, num_runs, mesh=mesh),
        upload=None
        if malicious is None
        else build_server(
            config, classifier, shape, num_runs, mesh=mesh, adversary_update=malicious
        ),
        adversary=adversary_program.build_program(config, classifier, shape, num_runs, trainer),
        evaluation=build_eval(config, classifier, shape, num_runs),
        plan=adversary_plan.Plan.from_config(config),
        mesh=mesh,
        resolved=resolved_settings(config),
        num_runs=num_runs,
    )


def adversary_upload(config: Config, apply_fn, generate) -> uploads.Upload | None:
    """The public upload builder of ``config.adversary.upload`` (None: honest), with the
    clients' own local recipe (`engine.client_recipe`, without DP-SGD: the adversary does
    not clip its own gradients); `generate` is the generator trainer's ``images``."""
    a = config.adversary
    recipe = client_recipe(config.fl, private=False)
    del recipe["dp_clip"], recipe["dp_noise_multiplier"]
    if a.upload == "gradient_ascent":
        return uploads.gradient_ascent(apply_fn, chunk=config.eval.batch_size, **recipe)
    if a.upload == "fake_class":
        return uploads.fake_class(apply_fn, generate, per_class=a.fake_per_class, **recipe)
    return None


def gan_trainer(config: Config, dataset: Dataset, classifier) -> gan.GanTrainer:
    g = config.gan
    return gan.make_gan_trainer(
        image_shape=dataset.image_shape,
        num_classes=dataset.num_classes,
        classifier=classifier,
        mode=g.mode,
        loss_overrides=dict(g.loss),
        latent_dim=g.latent_dim,
        channels=g.channels,
        batch_per_class=g.batch_per_class,
        steps_per_round=g.steps_per_round,
        learning_rate=g.learning_rate,
        critic_learning_rate=g.critic_learning_rate,
        samples_per_class=g.samples_per_class,
        keep_confidence=g.keep_confidence,
        filter_target=g.filter_target,
        realism_classes=g.realism_classes,
        conv_impl=config.model.conv_impl,
    )


class Keys(NamedTuple):
    server: ServerKeys
    adversary: AdversaryKeys
    evaluation: EvalKeys


def run_keys(setup: Setup) -> Keys:
    seeds = [int(r.get("seed")) for r in setup.runs]
    return Keys(*derive_keys(jnp.stack([jax.random.key(s) for s in seeds])))


def initial_state(
    engine: Engine, config: Config, setup: Setup, view: adv.AdversaryView, keys: Keys
) -> RunState:
    """Round 0 of every run: M_0, nothing kept by the adversary, an empty log."""
    params = engine.server.init(keys.server.init)
    ds = setup.dataset
    grid = (ds.num_classes, config.gan.figure_per_class, *ds.image_shape)
    return RunState(
        server=ServerState(params=params, round=jnp.zeros((), jnp.int32)),
        adversary=adv.init_state(
            engine.adversary,
            engine.plan,
            params,
            view,
            keys.adversary,
            grid_shape=grid,
            num_candidates=len(ds.train_y) + len(ds.test_y),
        ),
        log=eval_log(setup.num_runs, config.fl.rounds, clients_per_round(config)),
    )


def _check_finite(ok: np.ndarray, what: str, t: int, setup: Setup, who=None) -> None:
    """Raises `NonFiniteError` naming the round, the phase, the client and the run."""
    if ok.all():
        return
    first = tuple(np.argwhere(~ok)[0])
    where = f", client {int(who[first])}" if who is not None else ""
    raise NonFiniteError(
        f"round {t}: non-finite values in {what}{where} (run {setup.runs[first[0]].name}); "
        "the run stops here: lower the learning rate or check the data"
    )


def learning_rate(config: Config, t: int) -> np.float32:
    fl = config.fl
    return np.float32(
        federated.learning_rate_at(
            t,
            base=fl.learning_rate,
            rounds=fl.rounds,
            schedule=fl.lr_schedule,
            final_fraction=fl.lr_final_fraction,
        )
    )


SEEN = ("uploads", "upload_sum", "weight_sum")  # what the server hands a colluding adversary


def run_round(
    engine: Engine,
    config: Config,
    setup: Setup,
    state: RunState,
    clients,
    keys: Keys,
    test,
    adversary_inputs=None,
) -> tuple[RunState, dict]:
    """Round t on the server (FedAvg) and in the experimenter's log (not the adversary's),
    and what the round handed out of the server's view (on device: the selected clients
    and their uploads, or their sums; empty unless colluding). With `adversary_inputs`
    (its malicious upload this round) the adversary's slot runs its own update; without,
    every participant trains honestly (the honest program)."""
    t = state.round + 1
    program = engine.server if adversary_inputs is None else engine.upload
    params, metrics = program.round(
        state.server.params, clients, keys.server.fl, t, learning_rate(config, t), adversary_inputs
    )
    seen = {k: metrics.pop(k) for k in SEEN if k in metrics}
    if seen:
        seen["client"] = metrics["client"]
    evals, metrics = jax.device_get((engine.evaluation.evaluate(params, *test), metrics))
    _check_finite(metrics["finite"], "a client's local training", t, setup, metrics["client"])
    _check_finite(np.isfinite(evals["loss"]), "the global model", t, setup)
    log = state.log.replace(
        accuracy=put_row(state.log.accuracy, t, evals["accuracy"]),
        loss=put_row(state.log.loss, t, evals["loss"]),
        client_loss=put_row(state.log.client_loss, t, metrics["loss"]),
        clients=put_row(state.log.clients, t, metrics["client"]),
    )
    server = ServerState(params=params, round=jnp.asarray(t, jnp.int32))
    return state.replace(server=server, log=log), seen


def federate(
    engine: Engine,
    config: Config,
    setup: Setup,
    state: RunState,
    *,
    clients,
    view: adv.AdversaryView,
    keys: Keys,
    test: tuple[jax.Array, jax.Array],
    on_round: Callable[[RunState, float], None] | None = None,
) -> RunState:
    """Rounds ``state.round+1 .. T``; `on_round(state, seconds)` after each (progress,
    checkpoints). The adversary may be asked about the candidate pool (`candidate_pool`)."""
    pool_x, pool_y = candidate_pool(setup.dataset)
    for t in range(state.round + 1, config.fl.rounds + 1):
        tic = time.perf_counter()
        inputs = None
        if engine.upload is not None:  # the adversary decides what it uploads this round
            inputs = adv.upload_inputs(
                engine.plan,
                state.adversary,
                t,
                view=view,
                keys=keys.adversary,
                pool_x=pool_x,
                pool_y=pool_y,
            )
        started_from = state.server.params  # M_{t-1}: what the round's uploads are applied to
        state, seen = run_round(engine, config, setup, state, clients, keys, test, inputs)
        announced = np.asarray(state.log.accuracy[:, t - 1])  # what the server announces
        # whether the server asked the adversary to train (it knows; nothing else of the log)
        selected = (np.asarray(state.log.clients[:, t - 1]) == config.fl.adversary).any(-1)
        observed = adv.observe(
            engine.adversary,
            engine.plan,
            state.adversary,
            state.server.params,
            announced,
            t,
            view=view,
            keys=keys.adversary,
            pool_x=pool_x,
            pool_y=pool_y,
            selected=selected,
        )
        pool = (pool_x, pool_y)
        observed = collusion.observe(
            engine.adversary, engine.plan, observed, started_from, seen, t, view=view, pool=pool
        )
        state = state.replace(adversary=observed)
        if on_round is not None:
            on_round(state, time.perf_counter() - tic)
    return state


def candidate_pool(dataset: Dataset) -> tuple[jax.Array, jax.Array]:
    """The records the adversary is asked about: every training record, then every test
    record (protocols.py); labels included, membership not."""
    x = jnp.asarray(np.concatenate([dataset.train_x, dataset.test_x]))
    return x, jnp.asarray(np.concatenate([dataset.train_y, dataset.test_y]))


def oracle_attack(engine: Engine, dataset: Dataset, keys: EvalKeys, victim_labels, pool_x):
    """The evaluation-side upper bound: a classifier trained on the federation's real
    training records of every class (no adversary has them), under the same rule."""
    x, y = jnp.asarray(dataset.train_x), jnp.asarray(dataset.train_y)
    clf, _ = engine.evaluation.fit_oracle(keys.oracle, x, y)
    logits = np.asarray(engine.evaluation.logits(clf, pool_x))
    scores, decisions = adversary_attacks.label_scores(logits, victim_labels)
    return {"logits": logits, "scores": scores, "decisions": decisions}


def attack_phase(
    engine: Engine, config: Config, setup: Setup, state: RunState, *, view, keys: Keys
) -> dict[str, Any]:
    """Every configured attack on the pool (train records, then test records), plus the
    accuracy on the test split of each attack classifier. Host arrays, run axis first.
    With hidden declarations every attack (the oracle too) uses the victim label set the
    adversary recovered (`recovered_view`)."""
    ds = setup.dataset
    pool_x, pool_y = candidate_pool(ds)
    view, recovery = recovered_view(engine, config, setup, state, view)
    out = adversary_attacks.attack_targets(
        engine.adversary,
        engine.plan,
        state.adversary,
        view=view,
        keys=keys.adversary,
        pool_x=pool_x,
        pool_y=pool_y,
    )
    _lira_attacks(config, ds, state, out, view=view, keys=keys, pool_x=pool_x, pool_y=pool_y)
    attacks = config.attack.attacks
    if "oracle" in attacks:
        victim_labels = np.asarray(view.victim_labels)
        oracle = oracle_attack(engine, ds, keys.evaluation, victim_labels, pool_x)
        for field in ("logits", "scores", "decisions"):
            out[field]["oracle"] = oracle[field]
    n_train = len(ds.train_y)
    out["accuracy"] = {
        name: (np.argmax(logits[:, n_train:], -1) == ds.test_y).mean(1)
        for name, logits in out.pop("logits").items()
    }
    for name in list(out["scores"]):
        if name not in attacks:  # global_model is always scored (its accuracy is reported)
            del out["scores"][name], out["decisions"][name]
    out["pool_y"] = np.asarray(pool_y)
    out["label_recovery"] = recovery
    return out


def _lira_attacks(config: Config, ds: Dataset, state: RunState, out, *, view, keys, pool_x, pool_y):
    """Adds LiRA's user-level scores and decisions to `out` (`shadows.lira_z`: the shadows'
    likelihood ratio, with the label term of the global model as every membership attack)."""
    classifier = models.classifier(ds.spec, config.model.conv_impl)
    lira_z = shadows.lira_z(
        config,
        classifier,
        ds.image_shape,
        state.adversary.latest,
        view=view,
        keys=keys.adversary,
        pool_x=pool_x,
        pool_y=pool_y,
    )
    global_logits = jnp.asarray(out["logits"]["global_model"])
    for name, z in lira_z.items():
        scores, decisions = jax.vmap(membership.user_level)(
            global_logits, jnp.asarray(view.victim_labels), jnp.asarray(z)
        )
        out["scores"][name], out["decisions"][name] = np.asarray(scores), np.asarray(decisions)


def recovered_view(engine: Engine, config: Config, setup: Setup, state: RunState, view):
    """The view with the victim's recovered label set (the group matching it best, scored
    by the experimenter against the truth: `label_recovery.score`), and the scores per run;
    the view as is (and None) when the adversary was told the declarations."""
    groups = adv.recover_labels(engine.plan, state.adversary)
    if groups is None:
        return view, None
    fl = config.fl
    scores = [
        label_recovery.score(g, setup.declared[r], adversary=fl.adversary, victim=fl.victim)
        for r, g in enumerate(groups)
    ]
    rows = np.stack([label_recovery.victim_row(s, setup.dataset.num_classes) for s in scores])
    declared = jnp.asarray(view.declared).at[:, fl.victim].set(rows)
    return view.replace(declared=declared), scores
