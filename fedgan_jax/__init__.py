"""fedgan_jax: user-level membership inference in federated learning, simulated in JAX.

Implements Chen et al., "Beyond Model-Level Membership Privacy Leakage: an Adversarial
Approach in Federated Learning": a malicious FedAvg participant trains a generator against
the global models it receives, trains an attack classifier on the generated samples and
marks records IN when the predicted label is one of the victim's declared labels; and the
baselines, active uploads and protocols that measure that attack honestly.

The public API, in the shape of optax and fedjax: builders over a flax module (or an
``apply_fn``), plain arrays and hyper-parameters, returning pure, jittable functions or
small ``(init, ...)`` NamedTuples over typed states. No ``ConfigDict`` anywhere below::

    import fedgan_jax as fj
    part = fj.clients_from_arrays(x, y, num_clients=5, adversary=0, victim=1)
    fed = fj.federated_averaging(apply_fn, num_clients=5, batch_size=32)
    server = fed.init(params)
    server, metrics = jax.jit(fed.round)(server, part.clients, key)
    scores = fj.loss_calibrated(apply_fn, server.params, x, y)
    fj.membership_metrics(part.owner == 1, scores > 0, scores)

End to end from a config (what ``experiments/run.py`` calls):
``fedgan_jax.train_and_evaluate(config, workdir)``; sweeps: ``fedgan_jax.run_sweep(config,
workdir)``. The subpackages, lowest floor first: ``core``, ``data``, ``nn``,
``evaluation``, ``federation``, ``adversary``, ``driver``; each imports only from its own
floor or below.
"""

from fedgan_jax.adversary.attack import decide, make_classifier_trainer, victim_mass
from fedgan_jax.adversary.colluding import (
    Inference,
    ServerView,
    fedmia_scores,
    per_client_uploads,
    pool_records,
    server_view,
    source_posterior,
    threshold_at_fpr,
)
from fedgan_jax.adversary.gan import GanState, GanTrainer, make_gan_trainer
from fedgan_jax.adversary.gan_sampling import DGen
from fedgan_jax.adversary.lira import (
    Shadows,
    likelihood_ratio,
    lira_scores,
    lira_snapshot_scores,
    make_shadow_trainer,
    shadow_clients,
    shadow_masks,
    shadow_program,
    train_shadows,
)
from fedgan_jax.adversary.scores import (
    ascent_response,
    loss_calibrated,
    loss_threshold,
    trajectory,
)
from fedgan_jax.adversary.uploads import (
    AscentInputs,
    FakeInputs,
    ascent_inputs,
    fake_class,
    gradient_ascent,
)
from fedgan_jax.adversary.view import AdversaryView, view_of
from fedgan_jax.core.errors import (
    ConfigError,
    DataError,
    FedGanError,
    ModelError,
    NonFiniteError,
    WorkdirError,
)
from fedgan_jax.data.datasets import Dataset, DatasetSpec, load_dataset, register_dataset
from fedgan_jax.data.partition import (
    ClientData,
    Partition,
    Roles,
    Scheme,
    assign,
    clients_from_arrays,
    partition,
)
from fedgan_jax.evaluation.metrics import membership_metrics
from fedgan_jax.federation.fedavg import make_client_update, make_round
from fedgan_jax.federation.server import Federation, ServerState, Upload, federated_averaging
from fedgan_jax.nn.models import classifier, generator, init_params

__version__ = "0.1.0"

__all__ = [
    "AdversaryView",
    "AscentInputs",
    "ClientData",
    "ConfigError",
    "DGen",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "FakeInputs",
    "FedGanError",
    "Federation",
    "GanState",
    "GanTrainer",
    "Inference",
    "ModelError",
    "NonFiniteError",
    "Partition",
    "Roles",
    "Scheme",
    "ServerState",
    "ServerView",
    "Shadows",
    "Upload",
    "WorkdirError",
    "ascent_inputs",
    "ascent_response",
    "assign",
    "classifier",
    "clients_from_arrays",
    "decide",
    "fake_class",
    "federated_averaging",
    "fedmia_scores",
    "generator",
    "gradient_ascent",
    "init_params",
    "likelihood_ratio",
    "lira_scores",
    "lira_snapshot_scores",
    "load_dataset",
    "loss_calibrated",
    "loss_threshold",
    "make_classifier_trainer",
    "make_client_update",
    "make_gan_trainer",
    "make_round",
    "make_shadow_trainer",
    "membership_metrics",
    "partition",
    "per_client_uploads",
    "pool_records",
    "register_dataset",
    "run_sweep",
    "server_view",
    "shadow_clients",
    "shadow_masks",
    "shadow_program",
    "source_posterior",
    "threshold_at_fpr",
    "train_and_evaluate",
    "train_shadows",
    "trajectory",
    "victim_mass",
    "view_of",
]


def __getattr__(name):
    # The drivers pull in orbax, matplotlib and tqdm: imported on first use only.
    if name == "train_and_evaluate":
        from fedgan_jax.driver.experiment import train_and_evaluate

        return train_and_evaluate
    if name == "run_sweep":
        from fedgan_jax.driver.sweep import run_sweep

        return run_sweep
    raise AttributeError(f"module 'fedgan_jax' has no attribute {name!r}")
