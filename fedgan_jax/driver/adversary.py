"""The adversary as a participant (paper Sec. III-D): what it knows, keeps, does and uploads.

The adversary A is one participant. It keeps the global models it receives, controls its
own data, training and upload, and knows every participant's declared label set
(Sec. III-C). It never sees another participant's records, updates or losses, the
server's state or the server's keys: the server broadcasts the new global model (and, for
the paper's trigger, the main-task accuracy it announces).

A *colluding* adversary (``adversary.colludes``, `collusion.py`, the paper's Sec. VI
conspiracy) additionally sees, in the rounds it watches, every selected participant's
upload as the server sees it (under ``fl.secure_aggregation`` only their sum) and the
records of the participants colluding with it (`AdversaryView.coalition`); still never
a record of the victim or of a participant outside the coalition, nor the server's keys.

The signatures say so. Every function of the adversary's driver modules (this one,
`adversary_plan.py`, `adversary_program.py`, `adversary_attacks.py`) takes at most:

* the adversary's own state (`state.AdversaryState`) and its own keys (`state.AdversaryKeys`);
* the global params and announcements it receives;
* its `AdversaryView`: its own records and the declared label sets;
* for the final attacks, the candidate target records it is asked about.

`observe` is what it does when M_t arrives (keep a snapshot, watch the targets' losses
around its ascent rounds, fire the trigger, take its generator steps against the frozen
M_t); `adversary_attacks.attack_targets` is what it computes on the targets after the last
round (the label-based attacks, and the membership scores of `membership.py`). Its upload
plugs into the round: honest by default (it trains like every participant); a malicious
upload (`uploads.py`) is a function of the adversary's own inputs (`upload_inputs`) that
the round calls in its slot.

The adversary's driver code, one module per part:

* `adversary_plan.py`: `check_config` of ``config.adversary``, and the `Plan`: its static
  settings, read once from the config.
* `adversary_program.py`: its functions compiled over the run axis (`build_program`).
* `adversary.py`, this module: its state from round to round: `init_state`; `observe`
  (snapshots, the targets' losses around its ascent rounds, the label-recovery signal, the
  trigger, the generator's steps and the choice of the generator it keeps); the inputs of
  its malicious upload (`upload_inputs`); the labels it recovers (`recover_labels`).
* `adversary_attacks.py`: what it computes on the targets after the last round
  (`attack_targets`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedgan_jax.adversary import attack, label_recovery
from fedgan_jax.adversary.uploads import AscentInputs, FakeInputs
from fedgan_jax.adversary.view import AdversaryView, adversary_view  # noqa: F401  (re-exported)
from fedgan_jax.core.errors import NonFiniteError
from fedgan_jax.driver import collusion
from fedgan_jax.driver.adversary_plan import Plan
from fedgan_jax.driver.adversary_program import AdversaryProgram
from fedgan_jax.driver.state import (
    AdversaryKeys,
    AdversaryState,
    Snapshots,
    plateau_restores,
    put_row,
    round_key,
)


def init_state(
    program: AdversaryProgram,
    plan: Plan,
    params,
    view: AdversaryView,
    keys: AdversaryKeys,
    *,
    grid_shape: tuple[int, ...],
    num_candidates: int = 0,
) -> AdversaryState:
    """Nothing kept yet; snapshots (and the losses it watches, over `num_candidates`
    target records) preallocated, so their memory shows at once."""
    runs, t = view.victim.shape[0], plan.rounds
    kept = t // plan.snapshot_every if plan.snapshot_every else 0
    snapshots = None
    if kept:
        snapshots = Snapshots(
            round=jnp.zeros(kept, jnp.int32),
            params=jax.tree.map(lambda a: jnp.zeros((runs, kept, *a.shape[1:]), a.dtype), params),
        )
    grid = jnp.zeros((runs, *grid_shape), jnp.float32)
    gan_state = program.gan_init(keys.gan_init, view)
    if plan.select_patience:  # its restores halve the generator's learning rate
        gan_state = gan_state.replace(lr_scale=jnp.ones(runs, jnp.float32))
    selects = plan.select_every > 0
    return AdversaryState(
        latest=params,
        gan=gan_state,
        gan_start=jnp.zeros(runs, jnp.int32),
        snapshots=snapshots,
        grids={"first": grid, **{str(r): grid for r in plan.figure_rounds}},
        own_accuracy=jnp.full((runs, t), jnp.nan, jnp.float32),
        generator_loss=jnp.full((runs, t), jnp.nan, jnp.float32),
        generator_fooled=jnp.full((runs, t), jnp.nan, jnp.float32),
        ascent_loss=jnp.full((runs, len(plan.ascent_rounds), 2, num_candidates), jnp.nan)
        if plan.watches
        else None,
        last_update_norm=jnp.zeros(runs, jnp.float32),
        recovery_signal=jnp.full((runs, t, view.declared.shape[-1]), jnp.nan, jnp.float32)
        if plan.recovers_labels
        else None,
        selected=jnp.zeros((runs, t), bool) if plan.recovers_labels else None,
        gan_kept=jax.tree.map(jnp.copy, gan_state.generator) if selects else None,
        generator_score=jnp.full((runs, t), jnp.nan, jnp.float32) if selects else None,
        **collusion.init_fields(plan.collusion, view, num_candidates),
    )


def _keep_snapshot(program, plan: Plan, state: AdversaryState, params, t: int) -> AdversaryState:
    every = plan.snapshot_every
    if not every or t % every:
        return state
    slot = t // every - 1
    snaps = state.snapshots
    return state.replace(
        snapshots=Snapshots(
            round=snaps.round.at[slot].set(t), params=program.keep(snaps.params, params, slot)
        )
    )


def _watch(program, plan: Plan, state: AdversaryState, params, t, pool_x, pool_y):
    """The targets' losses under M_a (an ascent round a) and M_{a+1} (the round after)."""
    if not plan.watches:
        return state
    for i, a in enumerate(plan.ascent_rounds):
        if t in (a, a + 1):
            logits = program.pool_logits(params, pool_x)
            loss = jax.vmap(attack.record_losses, (0, None))(logits, jnp.asarray(pool_y))
            table = state.ascent_loss.at[:, i, t - a].set(loss)
            return state.replace(ascent_loss=table)
    return state


def upload_inputs(
    plan: Plan,
    state: AdversaryState,
    t: int,
    *,
    view: AdversaryView,
    keys: AdversaryKeys,
    pool_x: jax.Array,
    pool_y: jax.Array,
):
    """What its malicious upload in round t needs, from its own state, keys and candidates
    (`uploads.AscentInputs` / `FakeInputs`); None when it uploads honestly this round."""
    runs = view.victim.shape[0]
    key = jax.vmap(round_key, (0, None))(keys.upload, t)
    if plan.upload == "gradient_ascent" and t in plan.ascent_rounds:
        labels = jnp.asarray(pool_y)
        if plan.ascent_targets == "pool":
            weight = jnp.ones((runs, labels.shape[0]), jnp.float32)
        else:  # the candidates of the victim's declared classes
            weight = jnp.take(view.victim_labels, labels, axis=1).astype(jnp.float32)
        return AscentInputs(
            key=key,
            targets_x=jnp.broadcast_to(pool_x, (runs, *pool_x.shape)),
            targets_y=jnp.broadcast_to(labels, (runs, *labels.shape)),
            weight=weight,
            step=plan.ascent_gamma * view.declared.shape[-2] * state.last_update_norm,
        )
    active = np.asarray(state.gan_start) > 0
    if plan.upload == "fake_class" and active.any():
        own = view.declared[jnp.arange(runs), view.adversary]  # [R, C] its declared labels
        return FakeInputs(
            key=key,
            generator=state.gan.generator,
            fake_classes=view.victim_labels,
            fake_label=jnp.argmax(own, axis=-1).astype(jnp.int32),
            active=jnp.asarray(active),
        )
    return None


def _label_signal(program, plan: Plan, state, params, t, selected, *, view, keys):
    """Round t's ``M_t - M_{t-1}`` on the output bias minus its own share (label_recovery)."""
    c = view.declared.shape[-1]
    change = label_recovery.last_layer_bias(params, c) - label_recovery.last_layer_bias(
        state.latest, c
    )
    selected = np.asarray(selected, bool)
    if selected.any():
        key = jax.vmap(round_key, (0, None))(keys.upload, t)  # its own upload's stream
        lr = np.float32(plan.learning_rate_at(t))
        own = program.own_bias_update(state.latest, view, key, lr)
        change = change - jnp.asarray(selected)[:, None] * own / plan.clients_per_round
    return state.replace(
        recovery_signal=put_row(state.recovery_signal, t, change),
        selected=put_row(state.selected, t, selected),
    )


def recover_labels(plan: Plan, state: AdversaryState) -> list[list[list[int]]] | None:
    """Per run, the label sets it recovered from the rounds it saw (None: it was told)."""
    if not plan.recovers_labels:
        return None
    return [label_recovery.recover(s) for s in np.asarray(state.recovery_signal)]


def fired(plan: Plan, announced_accuracy, own_accuracy, t: int) -> np.ndarray:
    """[R] whether the trigger fires in round t (Sec. V-C: the announced accuracy)."""
    if plan.trigger == "accuracy":
        return np.asarray(announced_accuracy) >= plan.trigger_accuracy
    if plan.trigger == "own_accuracy":
        return np.asarray(own_accuracy) >= plan.trigger_accuracy
    return np.full(np.shape(own_accuracy), t >= plan.trigger_round)


def observe(
    program: AdversaryProgram,
    plan: Plan,
    state: AdversaryState,
    params,
    announced_accuracy: np.ndarray,
    t: int,
    *,
    view: AdversaryView,
    keys: AdversaryKeys,
    pool_x: jax.Array | None = None,
    pool_y: jax.Array | None = None,
    selected: np.ndarray | None = None,
) -> AdversaryState:
    """The adversary receives M_t in round t: it keeps M_t (and a snapshot if configured),
    records the others' bias change (hidden declarations; `selected` [R]: whether it was
    asked to train in round t, which a participant knows), watches the targets' losses
    around its ascent rounds, fires its trigger, and takes its generator steps against
    the frozen M_t."""
    if plan.recovers_labels:
        state = _label_signal(program, plan, state, params, t, selected, view=view, keys=keys)
    norm = jax.vmap(optax.tree.norm)(jax.tree.map(jnp.subtract, params, state.latest))
    state = state.replace(latest=params, last_update_norm=norm)
    state = _keep_snapshot(program, plan, state, params, t)
    state = _watch(program, plan, state, params, t, pool_x, pool_y)
    if t % plan.own_eval_every == 0 or t == plan.rounds:
        own = np.asarray(program.own_accuracy(params, view))
    else:  # not measured this round: nan, which never fires the own_accuracy trigger
        own = np.full(state.own_accuracy.shape[0], np.nan, np.float32)
    start = np.asarray(state.gan_start)
    start = np.where((start == 0) & fired(plan, announced_accuracy, own, t), t, start)
    state = state.replace(
        own_accuracy=put_row(state.own_accuracy, t, own), gan_start=jnp.asarray(start)
    )
    active = start > 0
    if not (active.any() and plan.uses_gan):
        return state
    return _generator_step(program, plan, state, params, t, active, view=view, keys=keys)


def _generator_step(program, plan, state, params, t, active, *, view, keys) -> AdversaryState:
    gan_state, gm = program.gan_update(state.gan, params, view, keys.gan, t, jnp.asarray(active))
    gm = jax.device_get(gm)
    if not (gm["finite"] | ~active).all():
        raise NonFiniteError(
            f"round {t}: non-finite values in the generator (GAN phase); the run stops "
            "here: lower the learning rate or check the data"
        )
    grids = dict(state.grids)
    due = {"first": np.asarray(state.gan_start) == t, str(t): active}
    if any(label in grids and d.any() for label, d in due.items()):
        new = program.figure_grid(gan_state, keys.figure)
        for label, d in due.items():
            if label in grids:
                grids[label] = jnp.where(
                    jnp.asarray(d)[:, None, None, None, None, None], new, grids[label]
                )
    state = state.replace(
        gan=gan_state,
        grids=grids,
        generator_loss=put_row(state.generator_loss, t, np.where(active, gm["loss"], np.nan)),
        generator_fooled=put_row(state.generator_fooled, t, np.where(active, gm["fooled"], np.nan)),
    )
    every = plan.select_every
    if every and (t % every == 0 or t == plan.rounds):
        state = _select_generator(program, plan, state, params, t, active, view=view, keys=keys)
    return state


def _select_generator(
    program, plan: Plan, state: AdversaryState, params, t, active, *, view, keys
) -> AdversaryState:
    """gan.select=own_mmd (own_feature_mmd): keep the generator if its own-class MMD (same
    latents and records at every check; in the features of `params`, the global model it
    trained against this round) is the lowest so far. With gan.select_patience P, the P-th
    (2P-th, ...) check in a row without a better score restores the kept generator and
    halves its learning rate (`state.plateau_restores`); its Adam moments and the critic
    carry on."""
    score = np.asarray(program.gan_score(state.gan.generator, params, view, keys.select))
    score = np.where(active, score, np.nan)
    better = jnp.asarray(score < state.gan_kept_score)  # nan is never better

    def where(mask):
        def pick(new, old):
            return jnp.where(mask.reshape(-1, *(1,) * (new.ndim - 1)), new, old)

        return pick

    kept = jax.tree.map(where(better), state.gan.generator, state.gan_kept)
    scores = put_row(state.generator_score, t, score)
    gan = state.gan
    restore = plateau_restores(np.asarray(scores), plan.select_patience)[:, t - 1]
    if restore.any():
        restore = jnp.asarray(restore)
        gan = gan.replace(
            generator=jax.tree.map(where(restore), kept, gan.generator),
            lr_scale=jnp.where(restore, 0.5 * gan.lr_scale, gan.lr_scale),
        )
    return state.replace(gan=gan, gan_kept=kept, generator_score=scores)
