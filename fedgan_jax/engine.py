"""The compiled functions of an experiment, and the host-side setup of a batch of runs.

An `Engine` holds every jitted pure function a run needs (FedAvg round, evaluation, the
adversary's generator steps, D_gen, attack classifiers, scoring), built once per config.
A *batch of runs* (seeds and victim label counts of a sweep) shares the compiled program:
with R > 1 runs every array carries a leading run axis and the functions are vmapped over
it; with R = 1 there is no run axis at all (so `lax.cond` stays a real branch). Host-side
results always carry the run axis (`Engine.fetch`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fedgan_jax import attack, config_lib, federated, gan, models, partition, training
from fedgan_jax.data import Dataset
from fedgan_jax.types import Config, PRNGKey

# Independent PRNG streams of a run, folded into the run's key (the one registry).
STREAMS = {
    "init": 0,
    "fl": 1,
    "gan_init": 2,
    "gan": 3,
    "sample": 4,
    "attack": 5,
    "oracle": 6,
    "figure": 7,
    "strict": 8,  # the strict protocol's held-out sample (numpy, host side)
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


def run_of(config: Config) -> RunSpec:
    return RunSpec(config.seed, config.fl.victim_num_labels)


def roles_of(config: Config, run: RunSpec) -> partition.Roles:
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


def deal(config: Config, dataset: Dataset, run: RunSpec) -> tuple[np.ndarray, np.ndarray]:
    """The run's declared label sets ``[N, C]`` and the owner of each training record."""
    declared = partition.deal_labels(dataset.num_classes, roles_of(config, run), run.seed)
    return declared, partition.owners(dataset.train_y, declared)


def common_capacity(config: Config, dataset: Dataset, runs: Sequence[RunSpec]) -> int:
    """The largest client of all `runs`, rounded up to a local batch: one shape for all."""
    most = 0
    for run in runs:
        _, owner = deal(config, dataset, run)
        most = max(most, int(np.bincount(owner[owner >= 0]).max()))
    b = config.fl.batch_size
    return -(-most // b) * b


def prepare(config: Config, dataset: Dataset, runs: Sequence[RunSpec], capacity: int) -> Setup:
    """Deals labels and builds the padded client arrays of every run (numpy)."""
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

    def __init__(self, config: Config, dataset: Dataset, num_runs: int):
        self.config = config
        self.num_runs = num_runs
        self.image_shape = dataset.image_shape
        fl, g, a = config.fl, config.gan, config.attack
        self.classifier = models.classifier(dataset.name, config.model.conv_impl)
        self.mesh = make_mesh(config_lib.mesh_devices(config))
        # What 'auto' resolved to on this backend: recorded with the workdir, so a resume
        # on another backend (other numerics) is noticed.
        self.resolved = {
            "backend": jax.default_backend(),
            "conv_impl": self.classifier.conv_impl,
            "client_chunk": resolve_client_chunk(fl.client_chunk),
        }

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
            client_chunk=self.resolved["client_chunk"],
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

        def own_accuracy(params, view):  # what the adversary can measure: its own records
            return training.evaluate(
                apply_fn, params, view.own_x, view.own_y, eval_bs, count=view.own_count
            )["accuracy"]

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

        def victim_labels(view):
            return view.victim_labels

        compile_ = self._compile
        self.init = compile_(init)
        self.round = compile_(fl_round, (0, 0, 0, None, None))
        self.evaluate = compile_(evaluate, (0, None, None))
        self.own_accuracy = compile_(own_accuracy)
        self.gan_init = compile_(gan_init)
        self.gan_update = compile_(gan_update, (0, 0, 0, 0, None, 0))
        self.figure_grid = compile_(figure_grid)
        self.sample = compile_(sample)
        self.fit_dgen = compile_(fit_dgen)
        self.fit_oracle = compile_(fit_oracle, (0, None, None))
        self.logits = compile_(logits, (0, None))
        self.logits_each = compile_(logits)  # per-run inputs (the adversary's own records)
        self.victim_labels = compile_(victim_labels)

    def _compile(self, fn: Callable, in_axes=0) -> Callable:
        """jit(fn) for one run (no run axis), jit(vmap(fn)) for several."""
        if self.num_runs == 1:
            return jax.jit(fn)
        return jax.jit(jax.vmap(fn, in_axes=in_axes))

    # Host <-> device in the engine's layout (no run axis when R == 1).
    def put(self, tree: Any) -> Any:
        """Host arrays with a run axis -> device arrays in the engine's layout."""
        if self.num_runs == 1:
            tree = jax.tree.map(lambda a: a[0], tree)
        return jax.tree.map(jnp.asarray, tree)

    def fetch(self, tree: Any) -> Any:
        """Device arrays in the engine's layout -> numpy with a run axis."""
        tree = jax.device_get(tree)
        if self.num_runs == 1:
            tree = jax.tree.map(lambda a: np.asarray(a)[None], tree)
        return jax.tree.map(np.asarray, tree)

    def run_keys(self, runs: Sequence[RunSpec]) -> PRNGKey:
        keys = jnp.stack([jax.random.key(r.seed) for r in runs])
        return keys[0] if self.num_runs == 1 else keys

    def place_clients(self, clients: partition.ClientData) -> partition.ClientData:
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
