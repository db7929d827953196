"""The adversary's compiled functions over the run axis (`AdversaryProgram`).

`build_program` compiles, once per batch of runs, what the adversary computes on device:
the global model's accuracy on its own records; its generator's init, round of steps,
figure grid, D_gen and own-class score (bound from a `gan.GanTrainer`); the attack
classifier's fit on D_gen; the logits of its own and of the candidate records; the
in-place write of a snapshot; the last-layer bias change of its own update (label
recovery); and, when it colludes, `collusion.build_program`. The host functions of
`adversary.py` (each round) and `adversary_attacks.py` (after the last) call them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from fedgan_jax.adversary import label_recovery
from fedgan_jax.core.types import Config
from fedgan_jax.driver import collusion
from fedgan_jax.driver.engine import (
    apply_fn_of,
    classifier_trainer,
    client_update_of,
    over_runs,
    resolve_run_batching,
)
from fedgan_jax.driver.state import round_key
from fedgan_jax.nn import models, training

if TYPE_CHECKING:
    from fedgan_jax.adversary.gan import GanTrainer


class AdversaryProgram(NamedTuple):
    """The adversary's compiled functions, over a run axis."""

    own_accuracy: Callable  # (params, view) -> [R]
    gan_init: Callable  # (keys.gan_init, view) -> GanState
    gan_update: Callable  # (gan_state, params, view, keys.gan, t, active) -> (state, metrics)
    figure_grid: Callable  # (gan_state, keys.figure) -> [R, C, n, H, W, ch]
    sample: Callable  # (gan_state, params, view, keys.sample) -> DGen
    fit_dgen: Callable  # (keys.attack, dgen) -> (classifier params, metrics)
    logits: Callable  # (params, x [R, n, ...]) -> [R, n, C]: its own records
    pool_logits: Callable  # (params, x [n, ...]) -> [R, n, C]: the candidate targets
    keep: Callable  # (snapshots.params, params, slot) -> snapshots.params (in place)
    own_bias_update: Callable  # (params, view, key, lr) -> [R, C]: its own update's bias change
    # (generator params, global params, view, keys.select) -> [R] (gan_selection.own_class_mmd)
    gan_score: Callable
    # (M_{t-1}, the round's server view, pool_x, pool_y, view) -> its sums' increments
    # (collusion.build_program); None when it does not collude
    collude: Callable | None = None


def build_program(
    config: Config, classifier, image_shape, num_runs: int, trainer: GanTrainer
) -> AdversaryProgram:
    apply_fn = apply_fn_of(classifier)
    eval_bs = config.eval.batch_size
    train_classifier = classifier_trainer(config, classifier, image_shape)
    figure_per_class, soft = config.gan.figure_per_class, config.attack.label_mode == "soft"

    def own_accuracy(params, view):  # what it can measure: the model on its own records
        return training.evaluate(
            apply_fn, params, view.own_x, view.own_y, eval_bs, count=view.own_count
        )["accuracy"]

    def gan_update(gan_state, params, view, key, t, active):
        new, metrics = trainer.update(gan_state, params, view, round_key(key, t))
        metrics["finite"] = jnp.isfinite(metrics["loss"]) & training.all_finite(new.generator)
        return jax.tree.map(lambda n, o: jnp.where(active, n, o), new, gan_state), metrics

    def fit_dgen(key, dgen):
        return train_classifier(key, dgen.x, dgen.soft if soft else dgen.y, dgen.count)

    def logits(params, x):
        return training.batched_apply(apply_fn, params, x, eval_bs)

    def keep(kept, params, slot):
        return jax.tree.map(lambda k, p: k.at[:, slot].set(p), kept, params)

    batching = resolve_run_batching(config.sweep.run_batching)

    def over(fn, in_axes=0):
        return over_runs(fn, num_runs, in_axes, batching)

    own_update = _own_bias_update(config, apply_fn)
    in_features = config.gan.select == "own_feature_mmd"
    if in_features:
        models.check_classifier(classifier, image_shape, None, features=True)

    def gan_score(generator, params, view, key):  # pixel space unless own_feature_mmd
        return trainer.own_mmd(generator, view, key, params if in_features else None)

    return AdversaryProgram(
        own_accuracy=over(own_accuracy),
        gan_init=over(trainer.init),
        gan_update=over(gan_update, (0, 0, 0, 0, None, 0)),
        figure_grid=over(
            lambda s, k: trainer.images(s.generator, k, figure_per_class),
        ),
        sample=over(trainer.sample),
        fit_dgen=over(fit_dgen),
        logits=over(logits),
        pool_logits=over(logits, (0, None)),
        keep=jax.jit(keep, donate_argnums=0),
        own_bias_update=over(own_update, (0, 0, 0, None)),
        gan_score=over(gan_score),
        collude=collusion.build_program(config, apply_fn, num_runs)
        if config.adversary.colludes
        else None,
    )


def _own_bias_update(config: Config, apply_fn) -> Callable:
    """``(params, view, key, lr) -> [C]``: the last-layer bias change of the update it
    uploads when it trains honestly (the clients' recipe, DP-SGD included)."""
    client_update = client_update_of(config.fl, apply_fn)

    def update(params, view, key, learning_rate):
        new, _ = client_update(params, view.own_x, view.own_y, view.own_count, key, learning_rate)
        c = view.declared.shape[-1]
        return label_recovery.last_layer_bias(new, c) - label_recovery.last_layer_bias(params, c)

    return update
