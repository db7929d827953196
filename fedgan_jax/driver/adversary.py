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

The signatures say so. Every function here takes at most:

* the adversary's own state (`state.AdversaryState`) and its own keys (`state.AdversaryKeys`);
* the global params and announcements it receives;
* its `AdversaryView`: its own records and the declared label sets;
* for the final attacks, the candidate target records it is asked about.

`observe` is what it does when M_t arrives (keep a snapshot, watch the targets' losses
around its ascent rounds, fire the trigger, take its generator steps against the frozen
M_t); `attack_targets` is what it computes on the targets after the last round (the
label-based attacks, and the membership scores of `membership.py`). Its upload plugs into
the round: honest by default (it trains like every participant); a malicious upload
(`uploads.py`) is a function of the adversary's own inputs (`upload_inputs`) that the
round calls in its slot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fedgan_jax.adversary import attack, label_recovery, membership, uploads
from fedgan_jax.adversary.uploads import UPLOADS, AscentInputs, FakeInputs  # noqa: F401
from fedgan_jax.adversary.view import AdversaryView, adversary_view  # noqa: F401  (re-exported)
from fedgan_jax.core import checks
from fedgan_jax.core.errors import NonFiniteError
from fedgan_jax.core.types import Config
from fedgan_jax.driver import collusion
from fedgan_jax.driver.engine import (
    apply_fn_of,
    classifier_trainer,
    client_update_of,
    over_runs,
    resolve_run_batching,
)
from fedgan_jax.driver.engine import clients_per_round as engine_clients_per_round
from fedgan_jax.driver.state import (
    AdversaryKeys,
    AdversaryState,
    Snapshots,
    plateau_restores,
    put_row,
    round_key,
)
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.nn import models, training

if TYPE_CHECKING:
    from fedgan_jax.adversary.gan import GanTrainer


def check_config(section, rounds: int, attacks: tuple[str, ...], num_participants: int) -> None:
    """``config.adversary``: what it keeps and what it uploads (`uploads.check_config`),
    and whether it colludes with the server (`collusion.check_config`)."""
    every = checks.integer("adversary.snapshot_every", section.snapshot_every, 0, rounds)
    if "trajectory" in attacks and not every:
        checks.fail("adversary.snapshot_every", every, "the trajectory attack needs snapshots")
    checks.integer("adversary.own_eval_every", section.own_eval_every, 1)
    uploads.check_config(section, rounds, attacks)
    collusion.check_config(section, rounds, attacks, num_participants)
    knows = checks.boolean("adversary.knows_declarations", section.knows_declarations)
    if not knows and section.upload != "honest":
        checks.fail(
            "adversary.upload",
            section.upload,
            "with hidden declarations (knows_declarations=False) it uploads honestly",
        )


@dataclasses.dataclass(frozen=True)
class Plan:
    """The adversary's static settings, read once from the config."""

    trigger: str  # accuracy | own_accuracy | round (gan_config.TRIGGERS)
    trigger_accuracy: float
    trigger_round: int
    uses_gan: bool  # the gan attack is configured: the generator trains
    snapshot_every: int  # keep every k-th global model (0: none)
    rounds: int
    figure_rounds: tuple[int, ...]
    figure_per_class: int
    soft_labels: bool  # attack.label_mode == soft
    loss_threshold: bool  # attack.attacks holds loss_threshold
    upload: str = "honest"
    attacks: tuple[str, ...] = ()  # attack.attacks
    ascent_rounds: tuple[int, ...] = ()  # rounds of the gradient_ascent upload (and watch)
    ascent_targets: str = "victim_classes"
    ascent_gamma: float = 1.0  # in global-update norms (uploads.py)
    adversary: int = 0  # its own index (fl.adversary)
    # Hidden declarations (label_recovery.py): it records the others' last-layer bias
    # change each round, removing its own update (it knows the protocol: the cohort size
    # and the clients' learning rate schedule).
    recovers_labels: bool = False
    clients_per_round: int = 0
    learning_rate: tuple[float, str, float] = (0.0, "constant", 0.0)  # base, schedule, final
    select_every: int = 0  # gan.select other than last: rounds between checks (0: last)
    select_patience: int = 0  # checks without a better score before a restore (0: never)
    own_eval_every: int = 1  # rounds between its own-accuracy measurements (and the last)
    collusion: collusion.CollusionPlan | None = None  # None: it does not collude

    def runs(self, attack_name: str) -> bool:
        return attack_name in self.attacks

    @property
    def watches(self) -> bool:
        """It measures the targets' losses around the ascent rounds (gradient_ascent)."""
        return self.runs("gradient_ascent") and bool(self.ascent_rounds)

    @classmethod
    def from_config(cls, config: Config) -> Plan:
        g, a = config.gan, config.attack
        return cls(
            trigger=g.trigger,
            trigger_accuracy=g.trigger_accuracy,
            trigger_round=g.trigger_round,
            uses_gan="gan" in a.attacks,
            snapshot_every=config.adversary.snapshot_every,
            rounds=config.fl.rounds,
            figure_rounds=tuple(g.figure_rounds),
            figure_per_class=g.figure_per_class,
            soft_labels=a.label_mode == "soft",
            loss_threshold="loss_threshold" in a.attacks,
            upload=config.adversary.upload,
            attacks=tuple(a.attacks),
            ascent_rounds=tuple(config.adversary.ascent_rounds),
            ascent_targets=config.adversary.ascent_targets,
            ascent_gamma=config.adversary.ascent_gamma,
            adversary=config.fl.adversary,
            recovers_labels=not config.adversary.knows_declarations,
            clients_per_round=engine_clients_per_round(config),
            learning_rate=(
                config.fl.learning_rate,
                config.fl.lr_schedule,
                config.fl.lr_final_fraction,
            ),
            select_every=g.select_every if g.select != "last" else 0,
            select_patience=g.select_patience if g.select != "last" else 0,
            own_eval_every=config.adversary.own_eval_every,
            collusion=collusion.CollusionPlan.from_config(config),
        )

    def learning_rate_at(self, t: int) -> float:
        base, schedule, final = self.learning_rate
        return federated.learning_rate_at(
            t, base=base, rounds=self.rounds, schedule=schedule, final_fraction=final
        )


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


def label_scores(logits, victim_labels) -> tuple[np.ndarray, np.ndarray]:
    """The label rule over runs: (victim mass scores, IN decisions), ``[R, n]`` each."""
    logits, labels = jnp.asarray(logits), jnp.asarray(victim_labels)
    scores = jax.vmap(attack.victim_mass)(logits, labels)
    return np.asarray(scores), np.asarray(jax.vmap(attack.decide)(logits, labels))


def _membership_z(program, plan: Plan, state: AdversaryState, global_logits, pool_x, pool_y):
    """Each configured membership attack's calibrated z-score ``[R, n]`` (membership.py)."""
    labels, z = jnp.asarray(pool_y), {}
    if plan.runs("loss_calibrated"):
        z["loss_calibrated"] = jax.vmap(membership.calibrated, (0, None))(global_logits, labels)
    if plan.runs("trajectory"):
        snaps = state.snapshots
        per_round = [
            program.pool_logits(jax.tree.map(lambda a, k=k: a[:, k], snaps.params), pool_x)
            for k in range(snaps.round.shape[0])
        ]
        stacked = jnp.stack(per_round, axis=1)  # [R, K, n, C]
        z["trajectory"] = jax.vmap(membership.trajectory, (0, None))(stacked, labels)
    if plan.watches:
        before, after = state.ascent_loss[:, :, 0], state.ascent_loss[:, :, 1]
        z["gradient_ascent"] = jax.vmap(membership.loss_drop, (0, 0, None, None))(
            before, after, labels, global_logits.shape[-1]
        )
    return z


def attack_targets(
    program: AdversaryProgram,
    plan: Plan,
    state: AdversaryState,
    *,
    view: AdversaryView,
    keys: AdversaryKeys,
    pool_x: jax.Array,
    pool_y: jax.Array,
) -> dict[str, Any]:
    """Everything the adversary computes on the target pool (Sec. IV-C, Algorithm 1).

    From its view, the latest global model it kept and its generator: D_gen and the attack
    classifier trained on it (`gan`), the global model used directly (`global_model`), the
    loss threshold calibrated on its own records (`loss_threshold`). Host arrays ``[R, ...]``:
    ``logits``, ``scores`` and ``decisions`` per attack over the pool, and D_gen.
    """
    params = state.latest
    victim_labels = view.victim_labels
    out: dict[str, Any] = {"logits": {}, "scores": {}, "decisions": {}}

    def labelled(name, logits):
        out["logits"][name] = np.asarray(logits)
        out["scores"][name], out["decisions"][name] = label_scores(logits, victim_labels)

    global_logits = np.asarray(program.pool_logits(params, pool_x))
    labelled("global_model", global_logits)  # always: its accuracy is reported
    if plan.loss_threshold:
        own_logits = program.logits(params, view.own_x)
        scores, decisions = jax.vmap(attack.loss_threshold, in_axes=(0, None, 0, 0, 0))(
            jnp.asarray(global_logits), jnp.asarray(pool_y), own_logits, view.own_y, view.own_count
        )
        out["scores"]["loss_threshold"] = np.asarray(scores)
        out["decisions"]["loss_threshold"] = np.asarray(decisions)
    for name, z in _membership_z(program, plan, state, global_logits, pool_x, pool_y).items():
        scores, decisions = jax.vmap(membership.user_level)(
            jnp.asarray(global_logits), victim_labels, z
        )
        out["scores"][name], out["decisions"][name] = np.asarray(scores), np.asarray(decisions)
    colluding_scores, colluding_decisions = collusion.scores(plan.collusion, state, view)
    out["scores"] |= colluding_scores
    out["decisions"] |= colluding_decisions
    if plan.uses_gan:  # runs whose generator never started are reported as such
        gan_state = state.gan
        if state.gan_kept is not None:  # gan.select=own_mmd: the generator it kept
            gan_state = gan_state.replace(generator=state.gan_kept)
        dgen = program.sample(gan_state, params, view, keys.sample)
        clf, fit_metrics = program.fit_dgen(keys.attack, dgen)
        if not np.asarray(fit_metrics["finite"]).all():
            raise NonFiniteError(
                f"round {plan.rounds}: non-finite values in the attack classifier; the run "
                "stops here: lower the learning rate or check the data"
            )
        labelled("gan", np.asarray(program.pool_logits(clf, pool_x)))
        out["dgen"] = jax.device_get(dgen)
    return out
