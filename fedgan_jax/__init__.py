"""fedgan_jax: user-level membership inference in federated learning, simulated in JAX.

Implements Chen et al., "Beyond Model-Level Membership Privacy Leakage: an Adversarial
Approach in Federated Learning": a malicious FedAvg participant trains a generator against
the global models it receives, trains an attack classifier on the generated samples and
marks records IN when the predicted label is one of the victim's declared labels; and the
baselines and protocols that measure that attack honestly.

The functional core (pure functions over pytrees, jit/vmap-ready):

    from fedgan_jax.federation import fedavg as federated
    from fedgan_jax.adversary import gan
    from fedgan_jax.adversary import attack
    from fedgan_jax.evaluation import metrics
    update = federated.make_client_update(apply_fn, local_epochs=1, batch_size=64)
    round_fn = jax.jit(federated.make_round(update, num_clients=5))
    params, metrics = round_fn(params, clients, key, learning_rate)

End to end (what ``experiments/run.py`` calls): ``fedgan_jax.train_and_evaluate(config,
workdir)``; sweeps: ``fedgan_jax.run_sweep(config, workdir)``.
"""

from fedgan_jax.adversary import attack, gan, label_recovery
from fedgan_jax.adversary.gan import make_gan_trainer
from fedgan_jax.core import errors
from fedgan_jax.core.errors import (
    ConfigError,
    DataError,
    FedGanError,
    ModelError,
    NonFiniteError,
    WorkdirError,
)
from fedgan_jax.data import datasets as data
from fedgan_jax.data import partition
from fedgan_jax.data.datasets import Dataset, DatasetSpec, load_dataset, register_dataset
from fedgan_jax.data.partition import ClientData, Roles, Scheme, assign, deal_labels
from fedgan_jax.driver import adversary, state
from fedgan_jax.driver.adversary import AdversaryView, adversary_view
from fedgan_jax.evaluation import metrics, protocols
from fedgan_jax.evaluation.metrics import membership_metrics
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.federation.fedavg import make_client_update, make_round
from fedgan_jax.nn import models, training

__version__ = "0.1.0"

__all__ = [
    "AdversaryView",
    "ClientData",
    "ConfigError",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "FedGanError",
    "ModelError",
    "NonFiniteError",
    "Roles",
    "Scheme",
    "WorkdirError",
    "adversary",
    "adversary_view",
    "assign",
    "state",
    "attack",
    "data",
    "deal_labels",
    "errors",
    "federated",
    "gan",
    "label_recovery",
    "load_dataset",
    "make_client_update",
    "make_gan_trainer",
    "make_round",
    "membership_metrics",
    "metrics",
    "models",
    "partition",
    "protocols",
    "register_dataset",
    "run_sweep",
    "train_and_evaluate",
    "training",
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
