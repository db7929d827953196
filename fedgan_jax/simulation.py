"""One experiment end to end: federation, adversary, generator, attacks (paper Fig. 2).

The host loop is thin; every step is a jitted pure function of an `Engine`:

    for t in 1..T:   M_t = round(M_{t-1}, clients)           FedAvg (federated.py)
                     acc_t = evaluate(M_t, test split)        main task (Fig. 5)
                     adversary: keep M_t; once the trigger fires, D <- M_t and
                     steps of G against the frozen D            (gan.py)
    D_gen = sample(G, M_T); attack classifier <- D_gen; score the target pool (attack.py)

A *batch of runs* (seeds and victim label counts of a sweep) shares the compiled program:
with R > 1 runs every array carries a leading run axis and the functions are vmapped over
it; with R = 1 there is no run axis at all (so `lax.cond` stays a real branch). Host-side
results always carry the run axis.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fedgan_jax import attack, config_lib, federated, gan, models, partition, training
from fedgan_jax.adversary import AdversaryView
from fedgan_jax.data import Dataset
from fedgan_jax.errors import NonFiniteError

Params = Any
# Independent PRNG streams of a run, folded into the run's key.
STREAMS = {
    "init": 0,
    "fl": 1,
    "gan_init": 2,
    "gan": 3,
    "sample": 4,
    "attack": 5,
    "oracle": 6,
    "figure": 7,
}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What varies between the runs of a sweep."""

    seed: int
    victim_num_labels: int
    gan_mode: str | None = None  # None: the config's gan.mode

    @property
    def name(self) -> str:
        prefix = f"{self.gan_mode}_" if self.gan_mode else ""
        return f"{prefix}k{self.victim_num_labels}_seed{self.seed}"


def run_of(config) -> RunSpec:
    return RunSpec(config.seed, config.fl.victim_num_labels)


def roles_of(config, run: RunSpec) -> partition.Roles:
    return partition.Roles(
        config.fl.num_participants, config.fl.adversary, config.fl.victim, run.victim_num_labels
    )


def resolve_client_chunk(chunk: int, backend: str | None = None) -> int:
    """-1 (auto): clients in sequence on CPU (1), one vmap on accelerators (0)."""
    if chunk != -1:
        return chunk
    return 1 if (backend or jax.default_backend()) == "cpu" else 0


def make_mesh(num_devices: int) -> Mesh | None:
    if num_devices == 1:
        return None
    devices = jax.devices()[: num_devices if num_devices > 0 else None]
    return Mesh(np.array(devices), (federated.CLIENT_AXIS,))


# --------------------------------------------------------------------------- setup


@dataclasses.dataclass
class Setup:
    """Host-side data of a batch of runs (numpy, run axis first)."""

    runs: list[RunSpec]
    dataset: Dataset
    declared: np.ndarray  # [R, N, C]
    owner: np.ndarray  # [R, n_train]
    clients: partition.ClientData  # [R, N, capacity, ...]

    @property
    def num_runs(self) -> int:
        return len(self.runs)


def deal(config, dataset: Dataset, run: RunSpec):
    declared = partition.deal_labels(dataset.num_classes, roles_of(config, run), run.seed)
    return declared, partition.owners(dataset.train_y, declared)


def common_capacity(config, dataset: Dataset, runs: Sequence[RunSpec]) -> int:
    """The largest client of all `runs`, rounded up to a local batch: one shape for all."""
    most = 0
    for run in runs:
        _, owner = deal(config, dataset, run)
        most = max(most, int(np.bincount(owner[owner >= 0]).max()))
    b = config.fl.batch_size
    return -(-most // b) * b


def prepare(config, dataset: Dataset, runs: Sequence[RunSpec], capacity: int) -> Setup:
    declared, owners, clients = [], [], []
    for run in runs:
        d, _ = deal(config, dataset, run)
        c, o = partition.partition(dataset.train_x, dataset.train_y, d, capacity=capacity)
        declared.append(d)
        owners.append(o)
        clients.append(c)
    stacked = jax.tree.map(lambda *a: np.stack(a), *clients)
    return Setup(list(runs), dataset, np.stack(declared), np.stack(owners), stacked)


# --------------------------------------------------------------------------- engine


class Engine:
    """The jitted functions of one config for batches of `num_runs` runs.

    Built once and reused: every run of a sweep has the same shapes (clients padded to a
    common capacity), so nothing recompiles between runs.
    """

    def __init__(self, config, dataset: Dataset, num_runs: int):
        self.config = config
        self.num_runs = num_runs
        self.image_shape = dataset.image_shape
        fl, g, a = config.fl, config.gan, config.attack
        self.classifier = models.classifier(dataset.name, config.model.conv_impl)
        self.mesh = make_mesh(config_lib.mesh_devices(config))

        def apply_fn(params, x):
            return self.classifier.apply({"params": params}, x)

        self.apply_fn = apply_fn
        client_update = federated.make_client_update(
            apply_fn,
            local_epochs=fl.local_epochs,
            batch_size=fl.batch_size,
        )
        round_fn = federated.make_round(
            client_update,
            num_clients=fl.num_participants,
            clients_per_round=config_lib.clients_per_round(config),
            client_chunk=resolve_client_chunk(fl.client_chunk),
            weighting=fl.weighting,
            mesh=self.mesh,
            clip_norm=fl.clip_norm,
            noise_multiplier=fl.noise_multiplier,
        )
        self.gan_trainer = gan.make_gan_trainer(
            dataset=dataset.name,
            classifier=self.classifier,
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
            conv_impl=config.model.conv_impl,
        )
        train_classifier = attack.make_classifier_trainer(
            self.classifier,
            dataset.image_shape,
            epochs=a.epochs,
            batch_size=a.batch_size,
            learning_rate=a.learning_rate,
        )
        eval_bs = config.eval.batch_size
        shapes = jnp.zeros((1, *dataset.image_shape))

        def key_of(run_key, stream, *fold):
            key = jax.random.fold_in(run_key, STREAMS[stream])
            for f in fold:
                key = jax.random.fold_in(key, f)
            return key

        def init(run_key):
            return models.init_params(self.classifier, key_of(run_key, "init"), shapes)

        def fl_round(params, clients, run_key, t, learning_rate):
            return round_fn(params, clients, key_of(run_key, "fl", t), learning_rate)

        def evaluate(params, x, y):
            return training.evaluate(apply_fn, params, x, y, eval_bs)

        def gan_init(run_key, view):
            return self.gan_trainer.init(key_of(run_key, "gan_init"), view)

        def gan_update(state, params, view, run_key, t, active):
            new, metrics = self.gan_trainer.update(state, params, view, key_of(run_key, "gan", t))
            metrics["finite"] = jnp.isfinite(metrics["loss"]) & training.all_finite(new.generator)
            return jax.tree.map(lambda n, o: jnp.where(active, n, o), new, state), metrics

        def figure_grid(state, run_key):
            return self.gan_trainer.images(
                state.generator, key_of(run_key, "figure"), config.gan.figure_per_class
            )

        def sample(state, params, view, run_key):
            return self.gan_trainer.sample(state, params, view, key_of(run_key, "sample"))

        def fit_dgen(run_key, dgen):
            y = dgen.soft if config.attack.label_mode == "soft" else dgen.y
            return train_classifier(key_of(run_key, "attack"), dgen.x, y, dgen.count)

        def fit_oracle(run_key, x, y):
            return train_classifier(key_of(run_key, "oracle"), x, y, jnp.int32(x.shape[0]))

        def logits(params, x):
            return training.batched_apply(apply_fn, params, x, eval_bs)

        jit = self._over_runs
        self.init = jit(init)
        self.round = jit(fl_round, (0, 0, 0, None, None))
        self.evaluate = jit(evaluate, (0, None, None))
        self.gan_init = jit(gan_init)
        self.gan_update = jit(gan_update, (0, 0, 0, 0, None, 0))
        self.figure_grid = jit(figure_grid)
        self.sample = jit(sample)
        self.fit_dgen = jit(fit_dgen)
        self.fit_oracle = jit(fit_oracle, (0, None, None))
        self.logits = jit(logits, (0, None))
        self.logits_each = jit(logits)  # per-run inputs (the adversary's own records)

    def _over_runs(self, fn: Callable, in_axes=0) -> Callable:
        """jit(fn) for one run (no run axis), jit(vmap(fn)) for several."""
        if self.num_runs == 1:
            return jax.jit(fn)
        return jax.jit(jax.vmap(fn, in_axes=in_axes))

    # Host <-> device in the engine's layout (no run axis when R == 1).
    def put(self, tree):
        """Host arrays with a run axis -> device arrays in the engine's layout."""
        if self.num_runs == 1:
            tree = jax.tree.map(lambda a: a[0], tree)
        return jax.tree.map(jnp.asarray, tree)

    def fetch(self, tree):
        """Device arrays in the engine's layout -> numpy with a run axis."""
        tree = jax.device_get(tree)
        if self.num_runs == 1:
            tree = jax.tree.map(lambda a: np.asarray(a)[None], tree)
        return jax.tree.map(np.asarray, tree)

    def run_keys(self, runs: Sequence[RunSpec]):
        keys = jnp.stack([jax.random.key(r.seed) for r in runs])
        return keys[0] if self.num_runs == 1 else keys

    def place_clients(self, clients: partition.ClientData):
        """Client arrays on device; with a mesh, the client axis split over it."""
        clients = self.put(clients)
        if self.mesh is None:
            return clients
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        lead = (None,) if self.num_runs > 1 else ()
        n = clients.counts.shape[-1]
        if n % self.mesh.size:  # uneven: leave placement to the compiler
            return clients
        spec = NamedSharding(self.mesh, P(*lead, federated.CLIENT_AXIS))
        return jax.tree.map(lambda a: jax.device_put(a, spec), clients)


# --------------------------------------------------------------------------- state


def initial_state(engine: Engine, setup: Setup, view: AdversaryView, keys) -> dict:
    """Everything a run carries between rounds (a checkpointable pytree)."""
    config = engine.config
    r, t = setup.num_runs, config.fl.rounds
    m = config_lib.clients_per_round(config)
    grid_shape = (r, setup.dataset.num_classes, config.gan.figure_per_class, *engine.image_shape)
    params = engine.init(keys)
    every = config.adversary.snapshot_every
    kept = t // every if every else 0  # preallocated: the memory the adversary will use
    return {
        "round": np.zeros((), np.int64),
        "params": params,
        "gan": engine.gan_init(keys, view),
        "gan_start": np.zeros(r, np.int64),  # round of the first generator update (0: none)
        "history": {
            "accuracy": np.zeros((r, t), np.float32),
            "loss": np.zeros((r, t), np.float32),
            "client_loss": np.zeros((r, t, m), np.float32),
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


def snapshot(state: dict, t: int):
    """The global params the adversary kept from round t (host arrays, run axis first)."""
    where = np.flatnonzero(state["snapshots"].get("round", np.zeros(0)) == t)
    if not len(where):
        raise KeyError(f"no snapshot of round {t} (adversary.snapshot_every)")
    return jax.tree.map(lambda a: a[:, where[0]], state["snapshots"]["params"])


def _check_finite(ok: np.ndarray, what: str, t: int, runs: Sequence[RunSpec], who=None):
    if ok.all():
        return
    r = int(np.argwhere(~ok)[0][0])
    where = f", client {int(who[tuple(np.argwhere(~ok)[0])])}" if who is not None else ""
    raise NonFiniteError(
        f"round {t}: non-finite values in {what}{where} (run {runs[r].name}); "
        "the run stops here: lower the learning rate or check the data"
    )


def federate(
    engine: Engine,
    setup: Setup,
    state: dict,
    *,
    clients,
    view: AdversaryView,
    keys,
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
    params,
    accuracy: np.ndarray,
    t: int,
    *,
    view: AdversaryView,
    keys,
) -> dict:
    """The adversary receives M_t (and the announced main-task accuracy) in round t.

    It keeps a snapshot if configured, fires the trigger, and takes its generator steps
    against the frozen M_t. Its inputs are only what Sec. III-D allows: the global params,
    the accuracy the server announces, and its own view.
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
    if g.trigger == "accuracy":
        fire = np.asarray(accuracy) >= g.trigger_accuracy
    else:
        fire = np.full(state["gan_start"].shape, t >= g.trigger_round)
    state["gan_start"] = np.where((state["gan_start"] == 0) & fire, t, state["gan_start"])
    active = state["gan_start"] > 0
    if not (active.any() and "gan" in config.attack.attacks):
        return state
    gan_state, gm = engine.gan_update(state["gan"], params, view, keys, t, engine.put(active))
    gm = engine.fetch(gm)
    if not (gm["finite"] | ~active).all():
        raise NonFiniteError(
            f"round {t}: non-finite generator loss or params (GAN phase); "
            "the run stops here: lower gan.learning_rate"
        )
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


# --------------------------------------------------------------------------- attacks


def attack_phase(
    engine: Engine, setup: Setup, state: dict, *, view: AdversaryView, keys
) -> dict[str, Any]:
    """D_gen, the attack classifiers and every attack's scores on the target pool.

    Returns host arrays with a run axis: ``scores[attack]``, ``decisions[attack]`` over the
    pool (train records, then test records), accuracies on the test split, and D_gen.
    """
    config = engine.config
    ds = setup.dataset
    attacks = config.attack.attacks
    pool_x = jnp.asarray(np.concatenate([ds.train_x, ds.test_x]))
    pool_y = np.concatenate([ds.train_y, ds.test_y])
    n_train = len(ds.train_y)
    victim_labels = setup.declared[:, config.fl.victim]  # [R, C]
    params = state["params"]
    out: dict[str, Any] = {"scores": {}, "decisions": {}, "accuracy": {}}

    def labelled(name, logits):
        logits, labels = jnp.asarray(logits), jnp.asarray(victim_labels)
        out["scores"][name] = np.asarray(jax.vmap(attack.victim_mass)(logits, labels))
        out["decisions"][name] = np.asarray(jax.vmap(attack.decide)(logits, labels))
        out["accuracy"][name] = np.asarray(
            (jnp.argmax(logits[:, n_train:], -1) == ds.test_y).mean(1)
        )

    global_logits = engine.fetch(engine.logits(params, pool_x))
    labelled("global_model", global_logits)
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
        _check_finite(fit_metrics["finite"], "the attack classifier", config.fl.rounds, setup.runs)
        labelled("gan", engine.fetch(engine.logits(clf, pool_x)))
        out["dgen"] = engine.fetch(dgen)
    if "oracle" in attacks:
        clf, _ = engine.fit_oracle(keys, jnp.asarray(ds.train_x), jnp.asarray(ds.train_y))
        labelled("oracle", engine.fetch(engine.logits(clf, pool_x)))
    for name in list(out["scores"]):
        if name not in attacks:  # global_model is always scored: its accuracy is reported
            del out["scores"][name], out["decisions"][name]
    out["pool_y"] = pool_y
    return out
