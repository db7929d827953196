"""The core by shapes, not names: a dataset and a model the package has never heard of.

scikit-learn's 8x8 digits (1,797 images, shape (8, 8, 1), 10 classes) and a flax model
written here go through the federation (`federated.make_round`), the adversary's
generator (`gan.make_gan_trainer`) and the attack classifier (`attack`), with nothing
registered in the package. Beside it: the `models.Classifier` contract's check, the
client-count check of `make_round`, and the named-dataset registry (fashion_mnist).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from fedgan_jax.adversary import attack, gan
from fedgan_jax.core.errors import ConfigError, DataError, ModelError
from fedgan_jax.data import datasets as data
from fedgan_jax.data import partition
from fedgan_jax.driver.adversary import AdversaryView
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.nn import models, training

SHAPE = (8, 8, 1)


class DigitsNet(nn.Module):
    """A user's model: the minimal `models.Classifier` (no with_features, no conv_impl)."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = x.reshape(*x.shape[:-3], -1)
        x = nn.relu(nn.Dense(64)(x))
        return nn.Dense(self.num_classes)(x)


def _apply(model):
    return lambda p, x: model.apply({"params": p}, x)


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    """The 8x8 digits (pixels 0..16) scaled to 0..255 and normalised like every loader."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    spec = data.DatasetSpec(SHAPE, 10)
    xs = data.normalize(x)
    return data.Dataset("digits", xs[train], y[train], xs[test], y[test], spec=spec)


@pytest.fixture(scope="module")
def federation(digits):
    """5 participants with disjoint declared labels (victim 1 holds 2), 20 FedAvg rounds."""
    roles = partition.Roles(num_participants=5, adversary=0, victim=1, victim_num_labels=2)
    declared = partition.deal_labels(digits.num_classes, roles, seed=0)
    clients, owner = partition.partition(digits.train_x, digits.train_y, declared, multiple_of=32)
    model = DigitsNet(num_classes=digits.num_classes)
    update = federated.make_client_update(_apply(model), local_epochs=2, batch_size=32)
    round_fn = jax.jit(federated.make_round(update, num_clients=5))
    params = models.init_params(model, jax.random.key(0), jnp.zeros((1, *digits.image_shape)))
    cd = jax.tree.map(jnp.asarray, clients)
    for t in range(20):
        params, _ = round_fn(params, cd, jax.random.fold_in(jax.random.key(1), t), 0.1)
    return model, params, clients, declared, owner


def test_federation_on_digits_with_a_users_model(digits, federation):
    model, params, *_ = federation
    acc = training.evaluate(_apply(model), params, digits.test_x, digits.test_y, 500)
    # Disjoint labels per client, 20 rounds: 0.92 here, far above chance (0.1).
    assert float(acc["accuracy"]) > 0.8


def test_generator_and_attack_on_digits(digits, federation):
    model, params, clients, declared, owner = federation
    view = AdversaryView(
        own_x=jnp.asarray(clients.x[0]),
        own_y=jnp.asarray(clients.y[0]),
        own_count=jnp.int32(clients.counts[0]),
        declared=jnp.asarray(declared),
        victim=jnp.int32(1),
        adversary=jnp.int32(0),
    )
    trainer = gan.make_gan_trainer(
        image_shape=digits.image_shape,
        num_classes=digits.num_classes,
        classifier=model,
        channels=16,
        batch_per_class=4,
        steps_per_round=50,
        samples_per_class=30,
        learning_rate=1e-2,
    )
    state = trainer.init(jax.random.key(2), view)
    update = jax.jit(trainer.update)
    for t in range(4):
        state, metrics = update(state, params, view, jax.random.key(10 + t))
    # Against the frozen global model the generator learns to produce its classes.
    assert float(metrics["fooled"]) > 0.9
    dgen = jax.jit(trainer.sample)(state, params, view, jax.random.key(3))
    assert dgen.x.shape == (10 * 30, *SHAPE) and int(dgen.count) > 200
    assert float(jnp.abs(dgen.x).max()) <= 1.0

    fit = attack.make_classifier_trainer(
        DigitsNet(), digits.image_shape, epochs=20, batch_size=32, learning_rate=3e-3
    )
    attack_params, _ = jax.jit(fit)(jax.random.key(4), dgen.x, dgen.y, dgen.count)
    # Members: the victim's training records; non-members: the other benign participants'.
    member, other = owner == 1, (owner >= 2)
    logits = _apply(DigitsNet())(attack_params, jnp.asarray(digits.train_x))
    decisions = np.asarray(attack.decide(logits, view.victim_labels))
    tpr, fpr = decisions[member].mean(), decisions[other].mean()
    # Seen here: TPR 0.89, FPR 0.05 (the paper's attack works on digits too).
    assert tpr > 0.6 and fpr < 0.25, (tpr, fpr)


# --------------------------------------------------------------------- the contract


class NoClasses(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


class WithBatchStats(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=False)(x.reshape(x.shape[0], -1))
        return nn.Dense(self.num_classes)(x)


class WrongOutput(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_classes + 1)(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize(
    "model, kw, fragment",
    [
        (NoClasses(), {}, "classifier NoClasses: has no integer field num_classes"),
        (DigitsNet(num_classes=3), {}, "num_classes=3, but the data has 10 classes"),
        (WithBatchStats(), {}, "holds collections ['batch_stats'] besides params"),
        (WrongOutput(), {}, "returns (2, 11) for a batch of 2, expected logits (2, 10)"),
        (DigitsNet(), {"mode": "dafl"}, "__call__ takes no with_features=True"),
        (lambda x: x, {}, "is not a flax.linen.Module"),
    ],
    ids=["no-num_classes", "class-count", "batch_stats", "logits-shape", "features", "fn"],
)
def test_trainer_names_what_the_classifier_lacks(model, kw, fragment):
    with pytest.raises(ModelError) as excinfo:
        gan.make_gan_trainer(image_shape=SHAPE, num_classes=10, classifier=model, **kw)
    message = str(excinfo.value)
    assert fragment in message and "\n" not in message


def test_table_ii_models_follow_the_contract_and_the_prior_critic_is_a_clone():
    clf = models.classifier("mnist", "im2col")
    models.check_classifier(clf, (28, 28, 1), 10, features=True)
    trainer = gan.make_gan_trainer(
        image_shape=(28, 28, 1), num_classes=10, classifier=clf, mode="prior", channels=8
    )
    assert trainer.init is not None
    with pytest.raises(ModelError, match="attack classifier NoClasses: has no integer field"):
        attack.make_classifier_trainer(
            NoClasses(), SHAPE, epochs=1, batch_size=8, learning_rate=1e-3
        )


def test_generator_shape_rules_are_one_line():
    with pytest.raises(ModelError, match=r"image_shape=\(30, 30, 1\): .*square"):
        models.generator((30, 30, 1), 10)

    class Flat(nn.Module):
        @nn.compact
        def __call__(self, z, labels):
            return nn.Dense(64)(z)

    with pytest.raises(ModelError, match=r"returns \(8, 64\) for 8 latents, expected images"):
        gan.make_gan_trainer(
            image_shape=SHAPE,
            num_classes=2,
            classifier=DigitsNet(num_classes=2),
            generator=Flat(),
            batch_per_class=4,
        )


# --------------------------------------------------------------------- make_round


@pytest.mark.parametrize("num_clients, effect", [(4, "drop some"), (6, "train some twice")])
def test_make_round_checks_its_client_count_against_the_data(num_clients, effect):
    model = DigitsNet()
    update = federated.make_client_update(_apply(model), local_epochs=1, batch_size=4)
    round_fn = jax.jit(federated.make_round(update, num_clients=num_clients))
    clients = partition.ClientData(
        x=jnp.zeros((5, 4, *SHAPE)), y=jnp.zeros((5, 4), jnp.int32), counts=jnp.full(5, 4)
    )
    params = models.init_params(model, jax.random.key(0), jnp.zeros((1, *SHAPE)))
    with pytest.raises(ConfigError) as excinfo:
        round_fn(params, clients, jax.random.key(1), 0.1)
    assert str(excinfo.value) == (
        f"make_round(num_clients={num_clients}), but the clients hold 5 "
        f"(ClientData.x.shape[0]): the round would {effect}; pass num_clients=5"
    )


# --------------------------------------------------------------------- the registry


def test_fashion_mnist_is_registered_with_the_table_ii_mnist_model(tmp_path):
    from tests.synthetic import write_idx

    spec = data.spec_for("fashion_mnist")
    assert (spec.image_shape, spec.num_classes, spec.tfds_name) == (
        (28, 28, 1),
        10,
        "fashion_mnist",
    )
    clf = models.classifier("fashion_mnist", "im2col")
    assert type(clf) is models.MnistCNN
    params = models.init_params(clf, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    assert models.param_count(params) == 536_258
    # The official IDX names, read by the files source.
    ds = data.load_dataset(
        "fashion_mnist",
        "files",
        write_idx(str(tmp_path), train_per_class=3, test_per_class=2, seed=0),
    )
    assert ds.train_x.shape == (30, 28, 28, 1) and ds.num_classes == 10
    with pytest.raises(DataError, match="holds MNIST only, not fashion_mnist"):
        data.load_dataset("fashion_mnist", "bundled")


def test_a_dataset_of_ones_own_needs_a_spec_and_can_be_registered():
    x, y = np.zeros((4, *SHAPE), np.float32), np.zeros(4, np.int32)
    with pytest.raises(DataError, match="'digits' is not registered: pass spec=DatasetSpec"):
        data.Dataset("digits", x, y, x, y)
    assert data.Dataset("digits", x, y, x, y, spec=data.DatasetSpec(SHAPE, 10)).image_shape == SHAPE
    with pytest.raises(ConfigError, match=r"image_shape=\(8, 8\) must be \(H, W, C\)"):
        data.register_dataset("flat", data.DatasetSpec((8, 8), 10))
