"""One experiment end to end: federation, adversary, generator, attacks (paper Fig. 2).

The host loop is thin; every step is a jitted pure function of an `engine.Engine`:

    for t in 1..T:   M_t = round(M_{t-1}, clients)           FedAvg (federated.py)
                     acc_t = evaluate(M_t, test split)        main task (Fig. 5)
                     adversary_observes(M_t): keep it; once the trigger fires, D <- M_t
                     and steps of G against the frozen D       (gan.py)
    adversary_attacks: D_gen = sample(G, M_T), attack classifier <- D_gen, scores of the
                     target pool (attack.py)
    oracle_attack:   the evaluation-side upper bound, trained on real records

Only the first and the last two take anything beyond the adversary's knowledge; the
adversary's functions take its `AdversaryView`, the global params and the target pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedgan_jax import attack, config_lib, federated
from fedgan_jax.adversary import AdversaryView
from fedgan_jax.data import Dataset
from fedgan_jax.engine import Engine, RunSpec, Setup
from fedgan_jax.errors import NonFiniteError
from fedgan_jax.types import PRNGKey


def initial_state(engine: Engine, setup: Setup, view: AdversaryView, keys: PRNGKey) -> dict:
    """Everything a run carries between rounds (a checkpointable pytree)."""
    config = engine.config
    r, t = setup.num_runs, config.fl.rounds
    m = config_lib.clients_per_round(config)
    grid_shape = (r, setup.dataset.num_classes, config.gan.figure_per_class, *engine.image_shape)
    params = engine.init(keys)
    every = config.adversary.snapshot_every
    kept = t // every if every else 0
    return {
        "round": np.zeros((), np.int64),
        "params": params,
        "gan": engine.gan_init(keys, view),
        "gan_start": np.zeros(r, np.int64),  # round of the first generator update (0: none)
        "history": {
            "accuracy": np.zeros((r, t), np.float32),
            "loss": np.zeros((r, t), np.float32),
            "client_loss": np.zeros((r, t, m), np.float32),
            "own_accuracy": np.full((r, t), np.nan, np.float32),
            "generator_loss": np.full((r, t), np.nan, np.float32),
            "generator_fooled": np.full((r, t), np.nan, np.float32),
        },
        "grids": {
            "first": np.zeros(grid_shape, np.float32),
            **{str(k): np.zeros(grid_shape, np.float32) for k in config.gan.figure_rounds},
        },
        # Preallocated, so the memory the adversary will use shows at once (orbax cannot
        # save empty arrays: no snapshots is an empty dict).
        "snapshots": {
            "round": np.zeros(kept, np.int64),
            "params": jax.tree.map(
                lambda a: np.zeros((r, kept, *a.shape[1:]), a.dtype), engine.fetch(params)
            ),
        }
        if kept
        else {},
    }


def snapshot(state: dict, t: int) -> Any:
    """The global params the adversary kept from round t (host arrays, run axis first)."""
    where = np.flatnonzero(state["snapshots"].get("round", np.zeros(0)) == t)
    if not len(where):
        raise KeyError(f"no snapshot of round {t} (adversary.snapshot_every)")
    return jax.tree.map(lambda a: a[:, where[0]], state["snapshots"]["params"])


def _check_finite(
    ok: np.ndarray, what: str, t: int, runs: Sequence[RunSpec] | None = None, who=None
) -> None:
    """Raises `NonFiniteError` naming the round, the phase, the client and the run."""
    if ok.all():
        return
    first = tuple(np.argwhere(~ok)[0])
    where = f", client {int(who[first])}" if who is not None else ""
    run = f" (run {runs[first[0]].name})" if runs is not None else ""
    raise NonFiniteError(
        f"round {t}: non-finite values in {what}{where}{run}; "
        "the run stops here: lower the learning rate or check the data"
    )


def federate(
    engine: Engine,
    setup: Setup,
    state: dict,
    *,
    clients,
    view: AdversaryView,
    keys: PRNGKey,
    test: tuple[jax.Array, jax.Array],
    on_round: Callable[[dict], None] | None = None,
) -> dict:
    """Rounds ``state['round']+1 .. T``: FedAvg, evaluation, the adversary's generator.

    `on_round(state)` runs after every round (progress, checkpoints).
    """
    config = engine.config
    runs = setup.runs
    for t in range(int(state["round"]) + 1, config.fl.rounds + 1):
        tic = time.perf_counter()
        lr = federated.learning_rate_at(
            t,
            base=config.fl.learning_rate,
            rounds=config.fl.rounds,
            schedule=config.fl.lr_schedule,
            final_fraction=config.fl.lr_final_fraction,
        )
        params, round_metrics = engine.round(state["params"], clients, keys, t, np.float32(lr))
        evals = engine.fetch(engine.evaluate(params, *test))
        round_metrics = engine.fetch(round_metrics)
        _check_finite(
            round_metrics["finite"], "a client's local training", t, runs, round_metrics["client"]
        )
        _check_finite(np.isfinite(evals["loss"]), "the global model", t, runs)
        hist = state["history"]
        hist["accuracy"][:, t - 1] = evals["accuracy"]
        hist["loss"][:, t - 1] = evals["loss"]
        hist["client_loss"][:, t - 1] = round_metrics["loss"]
        state["params"] = params
        state = adversary_observes(
            engine, state, params, evals["accuracy"], t, view=view, keys=keys
        )
        state["round"] = np.asarray(t, np.int64)
        state["round_seconds"] = time.perf_counter() - tic
        if on_round is not None:
            on_round(state)
    return state


def adversary_observes(
    engine: Engine,
    state: dict,
    params: Any,
    announced_accuracy: np.ndarray,
    t: int,
    *,
    view: AdversaryView,
    keys: PRNGKey,
) -> dict:
    """The adversary receives M_t in round t.

    It keeps a snapshot if configured, fires the trigger, and takes its generator steps
    against the frozen M_t. Its inputs are what Sec. III-D allows: the global params, its
    own view, and (trigger ``accuracy`` only) the main-task accuracy the server announces;
    trigger ``own_accuracy`` needs no announcement: it measures M_t on its own records.
    """
    config = engine.config
    g = config.gan
    every = config.adversary.snapshot_every
    if every and t % every == 0:
        i = t // every - 1
        state["snapshots"]["round"][i] = t
        for kept, new in zip(
            jax.tree.leaves(state["snapshots"]["params"]),
            jax.tree.leaves(engine.fetch(params)),
            strict=True,
        ):
            kept[:, i] = new
    own = engine.fetch(engine.own_accuracy(params, view))
    state["history"]["own_accuracy"][:, t - 1] = own
    if g.trigger == "accuracy":
        fire = np.asarray(announced_accuracy) >= g.trigger_accuracy
    elif g.trigger == "own_accuracy":
        fire = own >= g.trigger_accuracy
    else:
        fire = np.full(state["gan_start"].shape, t >= g.trigger_round)
    state["gan_start"] = np.where((state["gan_start"] == 0) & fire, t, state["gan_start"])
    active = state["gan_start"] > 0
    if not (active.any() and "gan" in config.attack.attacks):
        return state
    gan_state, gm = engine.gan_update(state["gan"], params, view, keys, t, engine.put(active))
    gm = engine.fetch(gm)
    _check_finite(gm["finite"] | ~active, "the generator (GAN phase)", t)
    state["gan"] = gan_state
    hist = state["history"]
    hist["generator_loss"][:, t - 1] = np.where(active, gm["loss"], np.nan)
    hist["generator_fooled"][:, t - 1] = np.where(active, gm["fooled"], np.nan)
    grids = None
    for label, due in (("first", state["gan_start"] == t), (str(t), active)):
        if label in state["grids"] and due.any():
            if grids is None:
                grids = engine.fetch(engine.figure_grid(gan_state, keys))
            state["grids"][label] = np.where(
                due[:, None, None, None, None, None], grids, state["grids"][label]
            )
    return state


def adversary_attacks(
    engine: Engine,
    state: dict,
    *,
    view: AdversaryView,
    keys: PRNGKey,
    pool_x: jax.Array,
    pool_y: jax.Array,
) -> dict[str, Any]:
    """Everything the adversary computes on the target pool (Sec. IV-C, Algorithm 1).

    From its view, the last global model and its generator: D_gen, the attack classifier
    trained on it (`gan`), the global model used directly (`global_model`) and the loss
    threshold calibrated on its own records (`loss_threshold`). Returns host arrays with a
    run axis: ``logits``, ``scores`` and ``decisions`` per attack over the pool, and D_gen.
    """
    attacks = engine.config.attack.attacks
    params = state["params"]
    victim_labels = jnp.asarray(engine.fetch(engine.victim_labels(view)))  # [R, C]
    out: dict[str, Any] = {"logits": {}, "scores": {}, "decisions": {}}

    def labelled(name, logits):
        logits = jnp.asarray(logits)
        out["logits"][name] = np.asarray(logits)
        out["scores"][name] = np.asarray(jax.vmap(attack.victim_mass)(logits, victim_labels))
        out["decisions"][name] = np.asarray(jax.vmap(attack.decide)(logits, victim_labels))

    global_logits = engine.fetch(engine.logits(params, pool_x))
    labelled("global_model", global_logits)  # always: its accuracy is reported
    if "loss_threshold" in attacks:
        own_logits = engine.fetch(engine.logits_each(params, view.own_x))
        own = engine.fetch({"y": view.own_y, "n": view.own_count})
        scores, decisions = jax.vmap(attack.loss_threshold, in_axes=(0, None, 0, 0, 0))(
            jnp.asarray(global_logits),
            jnp.asarray(pool_y),
            jnp.asarray(own_logits),
            jnp.asarray(own["y"]),
            jnp.asarray(own["n"]),
        )
        out["scores"]["loss_threshold"] = np.asarray(scores)
        out["decisions"]["loss_threshold"] = np.asarray(decisions)
    if "gan" in attacks:  # runs whose generator never started are reported as such
        dgen = engine.sample(state["gan"], params, view, keys)
        clf, fit_metrics = engine.fit_dgen(keys, dgen)
        fit_metrics = engine.fetch(fit_metrics)
        _check_finite(fit_metrics["finite"], "the attack classifier", engine.config.fl.rounds)
        labelled("gan", engine.fetch(engine.logits(clf, pool_x)))
        out["dgen"] = engine.fetch(dgen)
    return out


def oracle_attack(
    engine: Engine, dataset: Dataset, *, keys: PRNGKey, victim_labels: np.ndarray, pool_x
) -> dict[str, np.ndarray]:
    """The evaluation-side upper bound: a classifier trained on the federation's real
    training records of every class (no adversary has them), under the same rule."""
    clf, _ = engine.fit_oracle(keys, jnp.asarray(dataset.train_x), jnp.asarray(dataset.train_y))
    logits = jnp.asarray(engine.fetch(engine.logits(clf, pool_x)))
    labels = jnp.asarray(victim_labels)
    return {
        "logits": np.asarray(logits),
        "scores": np.asarray(jax.vmap(attack.victim_mass)(logits, labels)),
        "decisions": np.asarray(jax.vmap(attack.decide)(logits, labels)),
    }


def attack_phase(
    engine: Engine, setup: Setup, state: dict, *, view: AdversaryView, keys: PRNGKey
) -> dict[str, Any]:
    """Every configured attack on the pool (train records, then test records), plus the
    accuracy on the test split of each attack classifier. Host arrays, run axis first."""
    ds = setup.dataset
    pool_x = jnp.asarray(np.concatenate([ds.train_x, ds.test_x]))
    pool_y = np.concatenate([ds.train_y, ds.test_y])
    out = adversary_attacks(
        engine, state, view=view, keys=keys, pool_x=pool_x, pool_y=jnp.asarray(pool_y)
    )
    if "oracle" in engine.config.attack.attacks:
        victim_labels = setup.declared[:, engine.config.fl.victim]
        oracle = oracle_attack(engine, ds, keys=keys, victim_labels=victim_labels, pool_x=pool_x)
        for field in ("logits", "scores", "decisions"):
            out[field]["oracle"] = oracle[field]
    n_train = len(ds.train_y)
    out["accuracy"] = {
        name: (np.argmax(logits[:, n_train:], -1) == ds.test_y).mean(1)
        for name, logits in out.pop("logits").items()
    }
    for name in list(out["scores"]):
        if name not in engine.config.attack.attacks:  # global_model is always scored
            del out["scores"][name], out["decisions"][name]
    out["pool_y"] = pool_y
    return out
