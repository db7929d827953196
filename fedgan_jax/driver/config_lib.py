"""Config checks and derived fields: every rule in one place, before any compute.

`validate(config)` raises `ConfigError` (one line: the field, its value and what is
allowed) on the first invalid field. It owns no section's rules: each section is checked
by the module that uses it, with the field checkers of `fedgan_jax.core.checks`:

    data        data.check_config           fl (roles)  partition.check_config
    fl          federated.check_config      model       models.check_config
    fl (DP)     privacy.check_config
    eval        training.check_config       attack      attack.check_config
    gan         gan_config.check_config

    adversary   adversary_plan.check_config

This module checks the rest (seed, checkpoint, sweep) and the glue between
sections; `preflight.check_config` the rules over several sections (fields a data source
ignores, a client fraction that rounds to another count). `resolve(config)` adapts
derived fields to the others: a ``gan.figure_rounds`` entry beyond ``fl.rounds`` (demo's
round 100 in a 40-round run) is dropped with a warning instead of stopping the run. The
launchers print a `ConfigError` without a traceback and exit non-zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from absl import logging

from fedgan_jax.adversary import attack, gan_config
from fedgan_jax.core import checks
from fedgan_jax.core.errors import ConfigError
from fedgan_jax.data import datasets as data
from fedgan_jax.data import partition
from fedgan_jax.driver import adversary_plan, preflight
from fedgan_jax.driver.engine import RUN_BATCHING
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.federation import privacy
from fedgan_jax.nn import models, training


def validate(config, *, label_counts: Iterable[int] | None = None) -> None:
    """Raises `ConfigError` on the first invalid field. Touches no data, compiles nothing.

    `label_counts` (a sweep's victim k values) are checked like fl.victim_num_labels.
    """
    preflight.check_seed("seed", config.seed)
    spec = data.check_config(config.data)
    federated.check_config(config.fl)
    privacy.check_config(config.fl)
    _check_sweep(config.sweep)
    partition.check_config(config.fl, spec.num_classes)
    _check_label_counts(config.fl, spec.num_classes, label_counts or ())
    models.check_config(config.model)
    training.check_config(config.eval)
    rounds = config.fl.rounds
    attacks = attack.check_config(config.attack)
    gan_config.check_config(config.gan, rounds=rounds, uses_gan="gan" in attacks)
    _check_sweep_modes(config.gan, tuple(config.sweep.gan_modes), rounds, "gan" in attacks)
    adversary_plan.check_config(config.adversary, rounds, attacks, config.fl.num_participants)
    checks.integer("checkpoint.every", config.checkpoint.every, 0)
    checks.integer("checkpoint.keep", config.checkpoint.keep, 1)
    preflight.check_config(config)


def _check_sweep(sweep) -> None:
    seeds = checks.unique("sweep.seeds", sweep.seeds)
    if not seeds:
        checks.fail("sweep.seeds", seeds, "must hold at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < preflight.SEED_LIMIT:
            checks.fail("sweep.seeds", seeds, "seeds must be integers in [0, 2**32)")
    counts = checks.unique("sweep.label_counts", sweep.label_counts)
    if not counts:
        checks.fail("sweep.label_counts", counts, "must hold at least one k")
    for k in counts:
        if isinstance(k, bool) or not isinstance(k, int):
            checks.fail("sweep.label_counts", counts, "must be integers")
    checks.integer("sweep.runs_per_batch", sweep.runs_per_batch, 0)
    checks.boolean("sweep.batched", sweep.batched)
    checks.choice("sweep.run_batching", sweep.run_batching, RUN_BATCHING)


def _check_label_counts(fl, num_classes: int, label_counts) -> None:
    """Every k of ``sweep.label_counts`` must make valid roles (`partition.Roles`); the
    error names the sweep's field, which the user typed, not fl.victim_num_labels."""
    for k in label_counts:
        variant = fl.copy_and_resolve_references()
        variant.victim_num_labels = k
        try:
            partition.check_config(variant, num_classes)
        except ConfigError as e:
            reason = str(e).replace("fl.victim_num_labels", "k").replace("victim_num_labels", "k")
            checks.fail("sweep.label_counts", tuple(label_counts), f"entry {k} fails: {reason}")


def _check_sweep_modes(g, modes: tuple[str, ...], rounds: int, uses_gan: bool) -> None:
    """Every mode of ``sweep.gan_modes`` must make a valid ``config.gan`` (gan's rules)."""
    checks.unique("sweep.gan_modes", modes)
    for mode in modes:
        variant = g.copy_and_resolve_references()
        variant.mode = mode
        try:
            gan_config.check_config(variant, rounds=rounds, uses_gan=uses_gan)
        except ConfigError as e:
            checks.fail("sweep.gan_modes", modes, f"entry {mode!r} fails: {e}")


def resolve(config):
    """A copy of the (validated) `config` with derived fields adapted to the others.

    ``gan.figure_rounds``: rounds beyond ``fl.rounds`` are dropped with a warning naming
    them (they would never be reached); an entry that is not an integer >= 1 stays a
    `ConfigError`. The caller's config is left as it is.
    """
    resolved = config.copy_and_resolve_references()
    kept, dropped = gan_config.split_figure_rounds(config.gan.figure_rounds, config.fl.rounds)
    if dropped:
        logging.warning(
            "gan.figure_rounds=%r: dropped %r, beyond fl.rounds=%d",
            tuple(config.gan.figure_rounds),
            dropped,
            config.fl.rounds,
        )
        resolved.gan.figure_rounds = kept
    return resolved


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
