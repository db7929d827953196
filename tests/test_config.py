"""Config rules: each section checked by its owner, each rule once, derived fields adapt."""

import ast
import logging
import os

import ml_collections
import pytest

from configs import cifar10, default, demo, demo_modes, mnist
from fedgan_jax.adversary import attack, gan, gan_config
from fedgan_jax.core.errors import ConfigError, DataError
from fedgan_jax.data import datasets as data
from fedgan_jax.data import partition
from fedgan_jax.driver import config_lib
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.nn import models, training


def _loose(config):
    """The config without ml_collections' type safety, as a hand-built config may be
    (a float in an int field, an int in a bool field)."""
    return ml_collections.ConfigDict(config.to_dict(), type_safe=False)


def _set(config, field, value):
    *path, name = field.split(".")
    node = config
    for part in path:
        node = node[part]
    node[name] = value


def _error(fn, *args, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("module", [default, demo, demo_modes, mnist, cifar10])
def test_shipped_configs_are_valid(module):
    config = module.get_config()
    config_lib.validate(config, label_counts=config.sweep.label_counts)


# --------------------------------------------------------------------------- owners

# (owner's check, the section it takes, field, bad value, message)
OWNED = [
    (
        data.check_config,
        "data",
        "dataset",
        "svhn",
        "data.dataset='svhn': allowed: mnist, cifar10, fashion_mnist",
    ),
    (data.check_config, "data", "test_fraction", 1.0, "data.test_fraction=1.0: must lie in (0.0"),
    (data.check_config, "data", "split_seed", -1, "data.split_seed=-1: must be an integer >= 0"),
    (data.check_config, "data", "download", 1, "data.download=1: must be True or False"),
    (federated.check_config, "fl", "rounds", 2.5, "fl.rounds=2.5: must be an integer"),
    (federated.check_config, "fl", "lr_schedule", "step", "fl.lr_schedule='step': allowed"),
    (federated.check_config, "fl", "lr_final_fraction", 2.0, "fl.lr_final_fraction=2.0"),
    (federated.check_config, "fl", "client_chunk", -2, "fl.client_chunk=-2: must be an integer"),
    (federated.check_config, "fl", "mesh_devices", 0, "fl.mesh_devices=0: use 1 (no sharding)"),
    (models.check_config, "model", "conv_impl", "fft", "model.conv_impl='fft': allowed: auto"),
    (training.check_config, "eval", "batch_size", 0, "eval.batch_size=0: must be an integer >= 1"),
    (attack.check_config, "attack", "label_mode", "x", "attack.label_mode='x': allowed: hard"),
    (attack.check_config, "attack", "epochs", 0, "attack.epochs=0: must be an integer >= 1"),
    (attack.check_config, "attack", "attacks", (), "attack.attacks=(): must name at least one"),
    (
        attack.check_config,
        "attack",
        "attacks",
        ("gan", "gan"),
        "attack.attacks=('gan', 'gan'): has a duplicate entry",
    ),
]


@pytest.mark.parametrize("check, section, field, value, message", OWNED)
def test_each_owner_rejects_its_fields(check, section, field, value, message):
    config = _loose(default.get_config())
    check(config[section])  # the default passes
    _set(config, f"{section}.{field}", value)
    assert message in _error(check, config[section])
    assert message in _error(config_lib.validate, config)  # and validate is that check


GAN_FIELDS = [
    ("mode", "wgan", "gan.mode='wgan': allowed: paper, dafl, adversarial, prior"),
    ("trigger_accuracy", 1.5, "gan.trigger_accuracy=1.5: must lie in [0.0, 1.0]"),
    ("channels", 6, "gan.channels=6: must be a multiple of 4"),
    ("latent_dim", 0, "gan.latent_dim=0: must be an integer >= 1"),
    ("filter_target", "yes", "gan.filter_target='yes': must be True or False"),
    ("figure_rounds", (0,), "gan.figure_rounds=(0,): must hold rounds (integers >= 1)"),
    ("figure_rounds", (2.5,), "gan.figure_rounds=(2.5,): must hold rounds"),
    ("figure_rounds", (True,), "gan.figure_rounds=(True,): must hold rounds"),
    ("loss.realism", -0.5, "gan.loss.realism=-0.5: must be >= 0, or -1 for the mode's default"),
    ("loss.ce", -2.0, "gan.loss.ce=-2.0: must lie in [-1.0, inf]"),
    ("loss.entropy", float("inf"), "gan.loss.entropy=inf: must be a finite number"),
]


@pytest.mark.parametrize("field, value, message", GAN_FIELDS)
def test_gan_check_rejects_its_fields(field, value, message):
    config = _loose(default.get_config())
    _set(config, f"gan.{field}", value)
    assert message in _error(gan_config.check_config, config.gan, rounds=400)
    assert message in _error(config_lib.validate, config)


def test_gan_trigger_round_is_checked_against_the_rounds_only_when_the_gan_attack_runs():
    config = default.get_config()
    config.gan.trigger = "round"
    config.gan.trigger_round = 9
    message = "gan.trigger_round=9: must be <= fl.rounds=5"
    assert message in _error(gan_config.check_config, config.gan, rounds=5, uses_gan=True)
    gan_config.check_config(config.gan, rounds=5, uses_gan=False)
    config.fl.rounds = 5
    config.attack.attacks = ("global_model",)
    config_lib.validate(config)


def test_diversity_needs_pairs_at_config_time_and_in_the_builder():
    config = default.get_config()
    config.gan.mode = "prior"  # diversity 1.0 by default
    config.gan.batch_per_class = 1
    message = "gan.batch_per_class=1: the diversity term needs >= 2"
    assert message in _error(config_lib.validate, config)
    clf = models.classifier("mnist")
    build = gan.make_gan_trainer
    assert _error(
        build,
        image_shape=(28, 28, 1),
        num_classes=10,
        classifier=clf,
        mode="prior",
        batch_per_class=1,
    ) == (_error(gan_config.check_config, config.gan, rounds=400))


def test_roles_rules_live_in_partition():
    config = default.get_config()
    config.fl.num_participants = 2
    expected = "fl.num_participants=2: must be an integer >= 3"
    assert _error(config_lib.validate, config) == expected
    assert _error(partition.check_config, config.fl, 10) == expected
    assert _error(partition.Roles(2, 0, 1, 1).validate, 10) == expected


def test_participants_minimum_is_one_constant_whatever_path_checks_it(monkeypatch):
    """Raising partition.MIN_PARTICIPANTS changes every path: no other copy of the rule."""
    monkeypatch.setattr(partition, "MIN_PARTICIPANTS", 4)
    config = default.get_config()
    config.fl.num_participants = 3
    expected = "fl.num_participants=3: must be an integer >= 4"
    assert _error(config_lib.validate, config) == expected
    assert _error(partition.deal_labels, 10, partition.Roles(3, 0, 1, 2), 0) == expected


def test_a_sweeps_label_counts_get_the_roles_rules():
    config = default.get_config()  # 5 participants: k <= 6
    config_lib.validate(config, label_counts=(1, 6))
    message = _error(config_lib.validate, config, label_counts=(1, 7))
    assert message.startswith("sweep.label_counts=(1, 7): entry 7 fails: k=7 with"), message
    assert "fl.victim_num_labels" not in message  # the field the user typed, not another


def test_gan_mode_is_one_list_whatever_path_checks_it(monkeypatch):
    """A preset added in gan_config.py alone is accepted by gan.mode and sweep.gan_modes alike."""
    config = default.get_config()
    config.sweep.gan_modes = ("paper", "wgan")
    message = "sweep.gan_modes=('paper', 'wgan'): entry 'wgan' fails: gan.mode='wgan': allowed"
    assert message in _error(config_lib.validate, config)
    monkeypatch.setattr(gan_config, "MODES", (*gan_config.MODES, "wgan"))
    monkeypatch.setitem(gan_config.MODE_DEFAULTS, "wgan", {"ce": 1.0, "entropy": 2.0})
    config_lib.validate(config)
    config.gan.mode = "wgan"
    config_lib.validate(config)
    assert gan_config.objective_name("wgan", {"entropy": 0.0}) == "wgan+entropy=0"


def test_every_swept_mode_must_agree_with_the_loss_overrides():
    config = default.get_config()
    config.gan.loss.realism = 0.3  # fine for paper; adversarial's student conflicts with it
    config_lib.validate(config)
    config.sweep.gan_modes = ("paper", "adversarial")
    message = _error(config_lib.validate, config)
    assert message.startswith("sweep.gan_modes=('paper', 'adversarial'): entry 'adversarial'")
    assert message.endswith("use one of them")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sweep.seeds", (), "sweep.seeds=(): must hold at least one seed"),
        ("sweep.seeds", (0, -1), "sweep.seeds=(0, -1): seeds must be integers in [0, 2**32)"),
        ("sweep.label_counts", (2, 2), "sweep.label_counts=(2, 2): has a duplicate entry"),
        ("sweep.label_counts", (2.5,), "sweep.label_counts=(2.5,): must be integers"),
        ("sweep.gan_modes", ("dafl", "dafl"), "sweep.gan_modes=('dafl', 'dafl'): has a dup"),
        ("checkpoint.keep", 0, "checkpoint.keep=0: must be an integer >= 1"),
        ("seed", -3, "seed=-3: must be an integer >= 0"),
    ],
)
def test_config_lib_checks_the_sections_it_owns(field, value, message):
    config = _loose(default.get_config())
    _set(config, field, value)
    assert message in _error(config_lib.validate, config)


# --------------------------------------------------------------------------- one message per rule


@pytest.mark.parametrize(
    "name, source, data_dir",
    [("cifar10", "bundled", ""), ("mnist", "files", ""), ("mnist", "web", ""), ("svhn", "", "")],
)
def test_data_rules_read_the_same_at_config_time_and_at_load_time(name, source, data_dir):
    config = default.get_config()
    config.data.dataset, config.data.source, config.data.data_dir = name, source, data_dir
    at_config = _error(data.check_config, config.data)
    with pytest.raises(DataError) as at_load:
        data.load_dataset(name, source, data_dir)
    assert str(at_load.value) == at_config


def test_missing_data_dir_reads_the_same_at_config_time_and_at_load_time(tmp_path):
    missing = str(tmp_path / "nowhere")
    config = default.get_config()
    config.data.data_dir = missing
    at_config = _error(data.check_config, config.data)
    with pytest.raises(DataError) as at_load:
        data.load_dataset("mnist", "tfds", missing)
    assert str(at_load.value) == at_config == f"data.data_dir={missing!r}: no such directory"


def test_builders_share_their_fields_messages():
    config = default.get_config()
    config.fl.lr_schedule = "step"
    with pytest.raises(ConfigError) as info:
        federated.learning_rate_at(1, base=0.1, rounds=10, schedule="step")
    assert str(info.value) == _error(federated.check_config, config.fl)
    config = default.get_config()
    config.fl.weighting = "median"
    with pytest.raises(ConfigError) as info:
        federated.client_weights(None, "median")
    assert str(info.value) == _error(federated.check_config, config.fl)
    config.model.conv_impl = "fft"
    with pytest.raises(ConfigError) as info:
        models.resolve_conv_impl("fft")
    assert str(info.value) == _error(models.check_config, config.model)


def test_xla_convolution_on_a_cpu_is_warned_of(caplog):
    """model.conv_impl='xla' is allowed on a CPU, but its derivatives run 17-20x slower
    inside the compiled round there: the check says so; im2col and auto stay silent."""
    config = demo.get_config()
    for impl in ("auto", "im2col"):
        config.model.conv_impl = impl
        with caplog.at_level(logging.WARNING):
            config_lib.validate(config)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    config.model.conv_impl = "xla"
    with caplog.at_level(logging.WARNING):
        config_lib.validate(config)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("model.conv_impl='xla' on a CPU")


# --------------------------------------------------------------------------- derived fields


def test_figure_rounds_beyond_the_run_are_dropped_with_a_warning(caplog):
    config = demo.get_config()  # figure_rounds = (100,)
    config.fl.rounds = 40
    config.gan.figure_rounds = (10, 100, 40, 41)
    config_lib.validate(config)  # not an error: the user did not ask for round 100
    with caplog.at_level(logging.WARNING):
        resolved = config_lib.resolve(config)
    assert tuple(resolved.gan.figure_rounds) == (10, 40)
    assert tuple(config.gan.figure_rounds) == (10, 100, 40, 41)  # the input is untouched
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "gan.figure_rounds=(10, 100, 40, 41): dropped (100, 41), beyond fl.rounds=40"
    ]
    assert resolved.fl.rounds == 40 and resolved.gan.mode == config.gan.mode


def test_resolve_keeps_reachable_figure_rounds_silently(caplog):
    config = demo.get_config()  # 150 rounds, figure round 100
    with caplog.at_level(logging.WARNING):
        resolved = config_lib.resolve(config)
    assert tuple(resolved.gan.figure_rounds) == (100,)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert config_lib.to_dict(resolved) == config_lib.to_dict(config)


@pytest.mark.parametrize("bad", [(0,), (-1, 5), (1.5,)])
def test_resolve_still_rejects_figure_rounds_that_are_not_rounds(bad):
    config = demo.get_config()
    config.gan.figure_rounds = bad
    assert "must hold rounds (integers >= 1)" in _error(config_lib.resolve, config)


# --------------------------------------------------------------------------- objective names


@pytest.mark.parametrize(
    "mode, overrides, name",
    [
        ("paper", None, "paper"),
        ("paper", {t: -1.0 for t in gan_config.LOSS_TERMS}, "paper"),  # the config's defaults
        ("paper", {"realism": 0.3}, "paper+realism=0.3"),
        ("prior", {"diversity": 0.0}, "prior+diversity=0"),
        ("prior", {"realism": 0.3, "diversity": -1.0}, "prior"),  # equal to the preset
        ("dafl", {"activation": 0.0, "entropy": 2.5}, "dafl+entropy=2.5+activation=0"),
        ("adversarial", {"ce": 0.5, "diversity": 1e-4}, "adversarial+ce=0.5+diversity=0.0001"),
    ],
)
def test_objective_name_names_the_preset_and_every_change(mode, overrides, name):
    assert gan_config.objective_name(mode, overrides) == name


def test_objective_name_rejects_what_the_trainer_rejects():
    assert "gan.mode='wgan'" in _error(gan_config.objective_name, "wgan")
    assert "use one of them" in _error(gan_config.objective_name, "adversarial", {"realism": 0.3})


# --------------------------------------------------------------------------- small units

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(
    os.path.relpath(os.path.join(d, f), os.path.join(_ROOT, "fedgan_jax"))
    for d, _, files in os.walk(os.path.join(_ROOT, "fedgan_jax"))
    for f in files
    if f.endswith(".py")
)


@pytest.mark.parametrize("filename", MODULES)
def test_no_function_over_60_lines(filename):
    with open(os.path.join(_ROOT, "fedgan_jax", filename)) as f:
        tree = ast.parse(f.read())
    long = [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long
