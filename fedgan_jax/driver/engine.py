"""Runs, the run axis, and the compiled functions of the server and the evaluation.

A *batch of runs* (the runs of a sweep that share one compiled program) carries a leading
run axis ``R`` everywhere; a single run is a batch of one. Every function is written for
one run and mapped over the run axis once, by `over_runs`. The adversary's compiled
functions are in `adversary_program.py`.

Host-side, `Setup` deals the labels of every run once and pads the clients to a common
capacity, so every run of a sweep has the same shapes and nothing recompiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fedgan_jax.adversary import attack
from fedgan_jax.core.types import Config
from fedgan_jax.data import partition
from fedgan_jax.data.datasets import Dataset
from fedgan_jax.driver import distributed
from fedgan_jax.driver.state import round_key
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.federation.server import ServerState, federated_averaging
from fedgan_jax.nn import models, training

# Fields of a run that change only its data and keys, never the compiled program: runs
# that differ in nothing else share one batch and one compilation.
DATA_FIELDS = (
    "seed",
    "fl.victim_num_labels",
    "fl.partition",
    "fl.dirichlet_alpha",
    "fl.holders_per_class",
)
_SHORT = {"seed": "seed", "fl.victim_num_labels": "k", "gan.mode": ""}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: the config fields its axes set, in axis order."""

    overrides: tuple[tuple[str, Any], ...]

    @property
    def name(self) -> str:
        """``k2_seed0``, ``adversarial_k2_seed0``, ``noise_multiplier=0.5_k2_seed0``."""
        parts = []
        for field, value in self.overrides:
            short = _SHORT.get(field)
            parts.append(
                f"{short}{value}" if short is not None else f"{field.split('.')[-1]}={value}"
            )
        return "_".join(parts)

    def get(self, field: str, default: Any = None) -> Any:
        return dict(self.overrides).get(field, default)

    @property
    def program_key(self) -> tuple:
        """The overrides that change the compiled program (all but `DATA_FIELDS`)."""
        return tuple((f, v) for f, v in self.overrides if f not in DATA_FIELDS)

    def apply(self, config: Config) -> Config:
        """A resolved copy of `config` with this run's fields set."""
        c = config.copy_and_resolve_references()
        with c.unlocked():
            for field, value in self.overrides:
                *path, name = field.split(".")
                node = c
                for part in path:
                    node = node[part]
                node[name] = value
        return c


def run_of(config: Config) -> RunSpec:
    """The single run of an experiment config."""
    return RunSpec((("fl.victim_num_labels", config.fl.victim_num_labels), ("seed", config.seed)))


RUN_BATCHING = ("auto", "vmap", "map")


def resolve_run_batching(batching: str, backend: str | None = None) -> str:
    """'auto': the runs of a batch in sequence inside one program on CPU ('map'), one vmap
    on accelerators. On CPU the vmap is slower per run than runs one by one (a client's
    loop over its real batches runs the most trips any run needs, with selects, and wider
    batches gain nothing on 2 cores; `experiments/benchmark.py` rows ``sweep_batched``)."""
    if batching != "auto":
        return batching
    return "map" if (backend or jax.default_backend()) == "cpu" else "vmap"


def over_runs(fn: Callable, num_runs: int, in_axes: Any = 0, batching: str = "vmap") -> Callable:
    """``jit(fn)`` mapped over the leading run axis of its arguments and results.

    Several runs: ``jit(vmap(fn))`` (``batching='vmap'``) or ``jit(lax.map(fn))``
    (``'map'``: one compiled program that runs them in turn, each exactly as alone). One
    run: the run axis is squeezed inside the jit and restored on the way out, which
    computes what ``vmap`` would, but keeps data-dependent control flow real (under
    `vmap` a `lax.cond` runs both sides and a loop the most trips any run needs, e.g. the
    padded steps a sequential client loop skips). Arguments with ``in_axes`` None carry no run axis.
    """
    if num_runs > 1 and batching == "vmap":
        return jax.jit(jax.vmap(fn, in_axes=in_axes))
    axes = in_axes

    def split(args):
        per = axes if isinstance(axes, tuple) else (axes,) * len(args)
        return per, tuple(a for a, ax in zip(args, per, strict=True) if ax is not None)

    def merge(args, per, mapped):
        it = iter(mapped)
        return [a if ax is None else next(it) for a, ax in zip(args, per, strict=True)]

    def one(*args):
        per, mapped = split(args)
        mapped = jax.tree.map(lambda v: v[0], mapped)
        return jax.tree.map(lambda v: v[None], fn(*merge(args, per, mapped)))

    def in_turn(*args):
        per, mapped = split(args)
        return jax.lax.map(lambda m: fn(*merge(args, per, m)), mapped)

    return jax.jit(one if num_runs == 1 else in_turn)


def clients_per_round(config) -> int:
    n = config.fl.num_participants
    return max(1, min(n, int(round(config.fl.client_fraction * n))))


def mesh_devices(config) -> int:
    return jax.device_count() if config.fl.mesh_devices == -1 else config.fl.mesh_devices


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


@dataclasses.dataclass(frozen=True)
class Setup:
    """Host-side data of a batch of runs (numpy, run axis first), dealt once."""

    runs: list[RunSpec]
    dataset: Dataset
    declared: np.ndarray  # [R, N, C]
    owner: np.ndarray  # [R, n_train]
    clients: partition.ClientData  # [R, N, capacity, ...]

    @property
    def num_runs(self) -> int:
        return len(self.runs)


def deal(config: Config, dataset: Dataset, run: RunSpec) -> tuple[np.ndarray, np.ndarray]:
    """The run's declared label sets ``[N, C]`` and the owner of each training record
    (`partition.assign`, under ``fl.partition``)."""
    fl = config.fl
    k = run.get("fl.victim_num_labels", fl.victim_num_labels)
    roles = partition.Roles(fl.num_participants, fl.adversary, fl.victim, k)
    scheme = partition.Scheme(
        run.get("fl.partition", fl.partition),
        run.get("fl.dirichlet_alpha", fl.dirichlet_alpha),
        run.get("fl.holders_per_class", fl.holders_per_class),
    )
    seed = run.get("seed", config.seed)
    return partition.assign(dataset.train_y, dataset.num_classes, roles, scheme, seed)


def deal_runs(config: Config, dataset: Dataset, runs: Sequence[RunSpec]) -> dict:
    """Every run's deal, made once: ``{run: (declared [N, C], owner [n_train])}``."""
    return {run: deal(config, dataset, run) for run in runs}


def common_capacity(config: Config, deals: dict) -> int:
    """The largest client of all dealt runs, rounded up to a local batch (or the client
    itself when a batch is wider: it trains on one short batch): one shape for all."""
    most = max(int(np.bincount(owner[owner >= 0]).max()) for _, owner in deals.values())
    b = config.fl.batch_size
    return -(-most // b) * b if most >= b else most


def prepare(
    config: Config, dataset: Dataset, deals: dict, runs: Sequence[RunSpec], capacity: int
) -> Setup:
    """The padded client arrays of every run of `runs` (numpy), from their deals."""
    declared, owners, clients = [], [], []
    for run in runs:
        d, owner = deals[run]
        c, o = partition.partition(
            dataset.train_x, dataset.train_y, d, capacity=capacity, owner=owner
        )
        declared.append(d)
        owners.append(o)
        clients.append(c)
    stacked = jax.tree.map(lambda *a: np.stack(a), *clients)
    return Setup(list(runs), dataset, np.stack(declared), np.stack(owners), stacked)


def place_clients(
    clients: partition.ClientData, mesh: Mesh | None, *, run_axis: bool = True
) -> partition.ClientData:
    """Client arrays ``[R, N, ...]`` (``[N, ...]`` without ``run_axis``: one round's) on
    device; with a mesh, the client axis split over it.
    A mesh over several processes takes global arrays: the client axis is padded to the
    mesh with record-less clients (never selected: the round draws from the first N) and
    each process places only the clients of its own devices."""
    lead = [None] if run_axis else []
    spec = None if mesh is None else NamedSharding(mesh, P(*lead, federated.CLIENT_AXIS))
    if spec is not None and distributed.multiprocess():
        pad = -clients.counts.shape[-1] % mesh.size
        before = [(0, 0)] * len(lead) + [(0, pad)]
        widths = lambda a: before + [(0, 0)] * (a.ndim - len(before))  # noqa: E731
        padded = jax.tree.map(lambda a: np.pad(np.asarray(a), widths(a)), clients)
        return distributed.to_global(padded, spec)
    clients = jax.tree.map(jnp.asarray, clients)
    if mesh is None or clients.counts.shape[-1] % mesh.size:  # uneven: the compiler places
        return clients
    return jax.tree.map(lambda a: jax.device_put(a, spec), clients)


# --------------------------------------------------------------------------- programs


class ServerProgram(NamedTuple):
    """The federation's compiled functions, over a run axis."""

    init: Callable  # (keys.init [R]) -> params [R]
    round: Callable  # (params, clients, keys.fl, t, lr, adversary_inputs) -> (params, metrics)


class EvalProgram(NamedTuple):
    """What the experimenter computes: main-task accuracy, the oracle, pool logits."""

    evaluate: Callable  # (params [R], x, y) -> {accuracy, loss} [R]
    fit_oracle: Callable  # (keys.oracle [R], x, y) -> (classifier params [R], metrics)
    logits: Callable  # (params [R], x) -> [R, n, C]


def resolved_settings(config: Config) -> dict[str, Any]:
    """What 'auto' settings resolve to on this backend (recorded with the workdir)."""
    return {
        "backend": jax.default_backend(),
        "conv_impl": models.resolve_conv_impl(config.model.conv_impl),
        "client_chunk": resolve_client_chunk(config.fl.client_chunk),
    }


def apply_fn_of(classifier) -> Callable:
    def apply_fn(params, x):
        return classifier.apply({"params": params}, x)

    return apply_fn


def classifier_trainer(config: Config, classifier, image_shape) -> Callable:
    """The attack (and oracle) classifier recipe of ``config.attack``: Adam, fresh init."""
    a = config.attack
    return attack.make_classifier_trainer(
        classifier,
        image_shape,
        epochs=a.epochs,
        batch_size=a.batch_size,
        learning_rate=a.learning_rate,
    )


def client_recipe(fl, *, private: bool = True) -> dict[str, Any]:
    """Every participant's local training, read from ``config.fl`` (the arguments of
    `fedavg.make_client_update`); ``private=False`` leaves out record-level DP-SGD."""
    return dict(
        local_epochs=fl.local_epochs,
        batch_size=fl.batch_size,
        local_steps=fl.local_steps,
        dp_clip=fl.dpsgd_clip if private else 0.0,
        dp_noise_multiplier=fl.dpsgd_noise_multiplier if private else 0.0,
    )


def client_update_of(fl, apply_fn: Callable, *, private: bool = True) -> Callable:
    """`fedavg.make_client_update` with the recipe of ``config.fl``."""
    return federated.make_client_update(apply_fn, **client_recipe(fl, private=private))


def server_view_of(config: Config) -> str:
    """What the round hands out of what the server sees (`fedavg.make_round`): each
    upload (``uploads``) or only their sum (``secure_aggregation``) to a colluding
    adversary; nothing (``none``, the program of a run without collusion) otherwise."""
    if not config.adversary.colludes:
        return "none"
    return "secure_aggregation" if config.fl.secure_aggregation else "uploads"


def federation_of(
    config: Config, classifier, *, mesh=None, adversary_update=None, server_view=None
) -> Any:
    """The public `federated_averaging` of ``config.fl`` (its learning rate: round t's of
    the schedule, `fedavg.learning_rate_at`, as a traced function of t); the round's
    metrics hand out `server_view` (default: `server_view_of` the config)."""
    fl = config.fl

    def rate(t):
        if fl.lr_schedule == "constant":
            return fl.learning_rate
        decay = optax.cosine_decay_schedule(fl.learning_rate, fl.rounds, fl.lr_final_fraction)
        return decay(t - 1)

    return federated_averaging(
        apply_fn_of(classifier),
        num_clients=fl.num_participants,
        learning_rate=rate,
        clients_per_round=clients_per_round(config),
        weighting=fl.weighting,
        clip_norm=fl.clip_norm,
        noise_multiplier=fl.noise_multiplier,
        adversary=fl.adversary,
        upload=adversary_update,
        client_chunk=resolve_client_chunk(fl.client_chunk),
        mesh=mesh,
        server_view=server_view_of(config) if server_view is None else server_view,
        **client_recipe(fl),
    )


def build_server(
    config: Config, classifier, image_shape, num_runs: int, *, mesh=None, adversary_update=None
) -> ServerProgram:
    """The public federation of ``config.fl`` (`federation_of`), mapped over runs; the
    adversary's upload from `adversary_update` (None: it trains honestly like every
    participant); the round's metrics hand out the server's view of `server_view_of`."""
    fl = config.fl
    fed = federation_of(config, classifier, mesh=mesh, adversary_update=adversary_update)

    def init(key):
        return models.init_params(classifier, key, jnp.zeros((1, *image_shape)))

    spans = mesh is not None and distributed.multiprocess()

    def fl_round(params, clients, fl_key, t, learning_rate, adversary_inputs):
        if spans:  # `place_clients` padded the client axis to the mesh: not participants
            clients = jax.tree.map(lambda a: a[: fl.num_participants], clients)
        server = ServerState(params=params, round=jnp.asarray(t - 1, jnp.int32))
        server, metrics = fed.round(
            server,
            clients,
            round_key(fl_key, t),
            learning_rate=learning_rate,
            adversary_inputs=adversary_inputs,
        )
        return server.params, metrics

    batching = resolve_run_batching(config.sweep.run_batching)
    fl_round = over_runs(fl_round, num_runs, (0, 0, 0, None, None, 0), batching)
    if spans:  # one SPMD program over every process's devices
        fl_round = distributed.spanning(fl_round, mesh, global_args=(1,))
    return ServerProgram(init=over_runs(init, num_runs, batching=batching), round=fl_round)


def build_eval(config: Config, classifier, image_shape, num_runs: int) -> EvalProgram:
    apply_fn = apply_fn_of(classifier)
    eval_bs = config.eval.batch_size
    train_classifier = classifier_trainer(config, classifier, image_shape)

    def evaluate(params, x, y):
        return training.evaluate(apply_fn, params, x, y, eval_bs)

    def fit_oracle(key, x, y):
        return train_classifier(key, x, y, jnp.int32(x.shape[0]))

    def logits(params, x):
        return training.batched_apply(apply_fn, params, x, eval_bs)

    batching = resolve_run_batching(config.sweep.run_batching)
    return EvalProgram(
        evaluate=over_runs(evaluate, num_runs, (0, None, None), batching),
        fit_oracle=over_runs(fit_oracle, num_runs, (0, None, None), batching),
        logits=over_runs(logits, num_runs, (0, None), batching),
    )
