"""Config validation: every field checked before any compute, one line per problem.

`validate(config)` raises `ConfigError` with a message naming the field, its value and
what is allowed. The launchers print it without a traceback and exit non-zero.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import jax

from fedgan_jax import data, gan, models
from fedgan_jax.attack import ATTACKS, LABEL_MODES
from fedgan_jax.errors import ConfigError
from fedgan_jax.federated import SCHEDULES, WEIGHTINGS
from fedgan_jax.partition import Roles
from fedgan_jax.protocols import PROTOCOLS


def _fail(field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{field}={value!r}: {allowed}")


def _int(config, field: str, low: int, high: int | None = None) -> int:
    value = _get(config, field)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(field, value, "must be an integer")
    if high is None and value < low:
        _fail(field, value, f"must be an integer >= {low}")
    if high is not None and not low <= value <= high:
        _fail(field, value, f"must be an integer in [{low}, {high}]")
    return value


def _float(config, field: str, low: float, high: float = math.inf, *, open_low=False) -> float:
    value = _get(config, field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(field, value, "must be a finite number")
    if value < low or (open_low and value == low) or value > high:
        bracket = "(" if open_low else "["
        _fail(field, value, f"must lie in {bracket}{low}, {high}]")
    return float(value)


def _choice(config, field: str, allowed: Iterable[str]) -> str:
    value = _get(config, field)
    allowed = tuple(allowed)
    if value not in allowed:
        _fail(field, value, f"allowed: {', '.join(allowed)}")
    return value


def _subset(config, field: str, allowed: Iterable[str]) -> tuple[str, ...]:
    value = tuple(_get(config, field))
    allowed = tuple(allowed)
    if not value:
        _fail(field, value, f"must name at least one of {', '.join(allowed)}")
    for item in value:
        if item not in allowed:
            _fail(field, value, f"unknown entry {item!r}; allowed: {', '.join(allowed)}")
    if len(set(value)) != len(value):
        _fail(field, value, "has a duplicate entry")
    return value


def _get(config, field: str):
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def clients_per_round(config) -> int:
    n = config.fl.num_participants
    return max(1, min(n, int(round(config.fl.client_fraction * n))))


def mesh_devices(config) -> int:
    return jax.device_count() if config.fl.mesh_devices == -1 else config.fl.mesh_devices


def validate(config, *, label_counts: Iterable[int] | None = None) -> None:
    """Raises `ConfigError` on the first invalid field. Touches no data, compiles nothing.

    `label_counts` (a sweep's victim k values) are checked like fl.victim_num_labels.
    """
    _int(config, "seed", 0)
    dataset = _choice(config, "data.dataset", data.DATASETS)
    source = _choice(config, "data.source", data.SOURCES)
    if source == "bundled" and dataset != "mnist":
        _fail("data.source", source, f"holds MNIST only, not {dataset}; use tfds or files")
    data_dir = config.data.data_dir
    if source == "files" and not data_dir:
        _fail("data.data_dir", data_dir, "data.source=files needs the folder of the files")
    if source != "bundled" and data_dir:
        import os

        if not os.path.isdir(data_dir):
            _fail("data.data_dir", data_dir, "no such directory")
    _float(config, "data.test_fraction", 0.0, 1.0, open_low=True)
    if config.data.test_fraction >= 1.0:
        _fail("data.test_fraction", config.data.test_fraction, "must lie in (0, 1)")
    _int(config, "data.split_seed", 0)
    _int(config, "data.max_train_per_class", 0)

    spec = data.spec_for(dataset)
    # 3: the adversary, the victim, and one benign participant whose records are the
    # protocols' non-members
    n = _int(config, "fl.num_participants", 3)
    _int(config, "fl.adversary", 0, n - 1)
    _int(config, "fl.victim", 0, n - 1)
    _int(config, "fl.victim_num_labels", 1, spec.num_classes - 1)
    for k in [config.fl.victim_num_labels, *(label_counts or ())]:
        Roles(n, config.fl.adversary, config.fl.victim, int(k)).validate(spec.num_classes)
    rounds = _int(config, "fl.rounds", 1)
    _int(config, "fl.local_epochs", 1)
    _float(config, "fl.learning_rate", 0.0, open_low=True)
    _choice(config, "fl.lr_schedule", SCHEDULES)
    _float(config, "fl.lr_final_fraction", 0.0, 1.0)
    _int(config, "fl.batch_size", 1)
    _float(config, "fl.client_fraction", 0.0, 1.0, open_low=True)
    weighting = _choice(config, "fl.weighting", WEIGHTINGS)
    clip = _float(config, "fl.clip_norm", 0.0)
    noise = _float(config, "fl.noise_multiplier", 0.0)
    if noise > 0 and clip == 0:
        _fail("fl.noise_multiplier", noise, "needs fl.clip_norm > 0 (the noise scale)")
    if noise > 0 and weighting != "uniform":
        _fail("fl.noise_multiplier", noise, "needs fl.weighting=uniform (bounded sensitivity)")
    _int(config, "fl.client_chunk", -1)
    devices = _int(config, "fl.mesh_devices", -1)
    if devices == 0:
        _fail("fl.mesh_devices", devices, "use 1 (no sharding), a device count, or -1 (all)")
    if devices > jax.device_count():
        _fail(
            "fl.mesh_devices",
            devices,
            f"only {jax.device_count()} {jax.default_backend()} device(s) are visible",
        )
    _choice(config, "model.conv_impl", models.CONV_IMPLS)
    _int(config, "eval.batch_size", 1)

    _choice(config, "gan.mode", gan.MODES)
    trigger = _choice(config, "gan.trigger", gan.TRIGGERS)
    _float(config, "gan.trigger_accuracy", 0.0, 1.0)
    trigger_round = _int(config, "gan.trigger_round", 1)
    _int(config, "gan.steps_per_round", 1)
    _int(config, "gan.batch_per_class", 1)
    _float(config, "gan.learning_rate", 0.0, open_low=True)
    _float(config, "gan.critic_learning_rate", 0.0, open_low=True)
    _int(config, "gan.latent_dim", 1)
    channels = _int(config, "gan.channels", 4)
    if channels % 4:
        _fail("gan.channels", channels, "must be a multiple of 4")
    _int(config, "gan.samples_per_class", 1)
    _float(config, "gan.keep_confidence", 0.0, 1.0)
    for r in config.gan.figure_rounds:
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= rounds:
            _fail("gan.figure_rounds", tuple(config.gan.figure_rounds), f"rounds in [1, {rounds}]")
    _int(config, "gan.figure_per_class", 1)
    for term in gan.LOSS_TERMS:
        value = _float(config, f"gan.loss.{term}", -1.0)
        if -1.0 < value < 0.0:
            _fail(f"gan.loss.{term}", value, "must be >= 0, or -1 for the mode's default")
    weights = gan.loss_weights(config.gan.mode, dict(config.gan.loss))  # raises on conflicts
    if weights["diversity"] > 0 and config.gan.batch_per_class < 2:
        _fail("gan.batch_per_class", config.gan.batch_per_class, "the diversity term needs >= 2")

    attacks = _subset(config, "attack.attacks", ATTACKS)
    _subset(config, "attack.protocols", PROTOCOLS)
    if "gan" in attacks and trigger == "round" and trigger_round > rounds:
        _fail("gan.trigger_round", trigger_round, f"must be <= fl.rounds={rounds}")
    _int(config, "attack.epochs", 1)
    _int(config, "attack.batch_size", 1)
    _float(config, "attack.learning_rate", 0.0, open_low=True)
    _choice(config, "attack.label_mode", LABEL_MODES)

    _int(config, "adversary.snapshot_every", 0, rounds)
    _int(config, "checkpoint.every", 0)
    _int(config, "checkpoint.keep", 1)
    if not tuple(config.sweep.seeds):
        _fail("sweep.seeds", tuple(config.sweep.seeds), "must hold at least one seed")
    for s in config.sweep.seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            _fail("sweep.seeds", tuple(config.sweep.seeds), "seeds must be integers >= 0")
    for field in ("sweep.seeds", "sweep.label_counts"):
        values = tuple(_get(config, field))
        if len(set(values)) != len(values):
            _fail(field, values, "has a duplicate entry")
    if not tuple(config.sweep.label_counts):
        _fail("sweep.label_counts", tuple(config.sweep.label_counts), "must hold at least one k")
    for k in config.sweep.label_counts:
        if isinstance(k, bool) or not isinstance(k, int):
            _fail("sweep.label_counts", tuple(config.sweep.label_counts), "must be integers")
    _int(config, "sweep.runs_per_batch", 0)
    if tuple(config.sweep.gan_modes):
        _subset(config, "sweep.gan_modes", gan.MODES)


def to_dict(config) -> dict:
    """The config as plain JSON-able data (tuples become lists)."""
    return json.loads(config.to_json())


def fingerprint(config, ignore: Iterable[str] = ()) -> str:
    """A stable hash of the config, for refusing to resume a different experiment."""
    import hashlib

    d = to_dict(config)
    for field in ignore:
        parts = field.split(".")
        node = d
        for p in parts[:-1]:
            node = node.get(p, {})
        node.pop(parts[-1], None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
