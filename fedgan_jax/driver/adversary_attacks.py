"""What the adversary computes on the candidate targets after the last round (Sec. IV-C).

`attack_targets` runs every configured attack from the adversary's state, keys and view
(the threat model of `adversary.py`) on the candidate records: the label rule
(`label_scores`: IN when the predicted label is one the victim declared) with the latest
global model (`global_model`) and with the classifier trained on D_gen (`gan`); the loss
threshold calibrated on its own records; the membership scores of `membership.py`
(`loss_calibrated`, `trajectory` over its snapshots, `gradient_ascent` over the losses it
watched); and a colluding adversary's (`collusion.scores`). Its compiled parts are those
of `adversary_program.py`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedgan_jax.adversary import attack, membership
from fedgan_jax.adversary.view import AdversaryView
from fedgan_jax.core.errors import NonFiniteError
from fedgan_jax.driver import collusion
from fedgan_jax.driver.adversary_plan import Plan
from fedgan_jax.driver.adversary_program import AdversaryProgram
from fedgan_jax.driver.state import AdversaryKeys, AdversaryState


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
