"""How the gradient-ascent signal and its cost grow with the step (adversary.ascent_gamma).

    python studies/ascent_probe.py \
        --run=runs/membership/runs/upload=honest_k2_seed1 --seed=1 --start=60

Restores a finished honest run's checkpoint of round `start` (of
`configs/demo_membership.py` with --seed), plays round start+1 honestly (so the adversary
sees one global update), then for each gamma plays round a=start+2 with the adversary's
ascent upload (gamma 0: its honest update on its own upload key, the control) and round
a+1 honestly, and prints the main-task accuracy after each and the `gradient_ascent`
score's separation of the victim's records from held-out records of its own classes (AUC,
TPR at 1% FPR), as `experiments/membership_report.py` computes it, and the mean loss of the
victim's records and of the held-out ones after each of the two rounds.

The targets are the candidates of the victim's classes (its records and the held-out
ones, the adversary cannot tell them apart). `--groups=G` splits them into G random groups
and plays rounds a, a+1 once per group from the same state, each ascent on its group
only: a step on fewer targets is more specific to them (docs/results.md's "Targets per group"
rows). The accuracy printed is then the mean over the groups' rounds.
"""

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import demo_membership  # noqa: E402
from fedgan_jax.adversary import attack, membership
from fedgan_jax.driver import adversary as adv  # noqa: E402
from fedgan_jax.driver import outputs  # noqa: E402
from fedgan_jax.driver.checkpointing import Checkpointer  # noqa: E402
from fedgan_jax.driver.engine import common_capacity, deal_runs, place_clients, prepare, run_of  # noqa: E402
from fedgan_jax.driver.experiment import load_data  # noqa: E402
from fedgan_jax.driver.simulation import (  # noqa: E402
    build_engine,
    candidate_pool,
    initial_state,
    run_keys,
    run_round,
)
from fedgan_jax.evaluation import metrics

_RUN = flags.DEFINE_string("run", None, "A finished run's folder (with checkpoints).")
_SEED = flags.DEFINE_integer("seed", 0, "The run's seed (configs/demo_membership.py).")
_START = flags.DEFINE_integer("start", 60, "The checkpoint round to start from.")
_GAMMAS = flags.DEFINE_list("gammas", ["0", "1", "3", "10", "30"], "Ascent step sizes.")
_GROUPS = flags.DEFINE_integer(
    "groups",
    1,
    "Split the targets into this many groups, each with its own ascent round "
    "from the same state (a more specific ascent direction per target).",
)
flags.mark_flags_as_required(["run"])


def main(argv):
    del argv
    config = demo_membership.get_config()  # the run's config: the demo's, its seed
    config.seed = _SEED.value
    start = _START.value
    a = start + 2  # round start+1 honest (the adversary sees one global update), a malicious
    config.adversary.upload, config.adversary.ascent_rounds = "gradient_ascent", (a,)
    dataset = load_data(config)
    run = run_of(config)
    deals = deal_runs(config, dataset, [run])
    setup = prepare(config, dataset, deals, [run], common_capacity(config, deals))
    engine = build_engine(config, dataset, 1)
    clients = place_clients(setup.clients, None)
    fl = config.fl
    view = adv.adversary_view(clients, setup.declared, adversary=fl.adversary, victim=fl.victim)
    keys = run_keys(setup)
    test = (jax.numpy.asarray(dataset.test_x), jax.numpy.asarray(dataset.test_y))
    ckpt = Checkpointer(os.path.join(_RUN.value, "checkpoints"), every=0, keep=2, last_round=0)
    target = initial_state(engine, config, setup, view, keys)
    restored = ckpt.manager.restore(start, args=ocp.args.StandardRestore(target))
    restored = _step(
        engine=engine,
        config=config,
        setup=setup,
        state=restored,
        clients=clients,
        keys=keys,
        test=test,
        inputs=None,
    )
    pool_x, pool_y = candidate_pool(dataset)
    sets = outputs._target_sets(config, setup, 0)
    member = sets["strict"].is_member
    keep = member | (np.arange(len(member)) >= len(sets["paper"].index))
    index = sets["strict"].index[keep]
    ctx = dict(engine=engine, config=config, setup=setup, clients=clients, keys=keys, test=test)
    ctx |= dict(view=view, pool_x=pool_x, pool_y=np.asarray(pool_y), a=a)
    groups = np.array_split(np.random.default_rng(0).permutation(len(index)), _GROUPS.value)
    print(f"targets: {len(index)} candidates of the victim's classes in {len(groups)} group(s)")
    print(
        "| gamma | acc. round a | acc. round a+1 | AUC (vs held-out) | TPR@1%FPR | mean loss "
        "after a -> after a+1: members | held-out |"
    )
    print("|---|---|---|---|---|---|---|")
    is_member = member[keep]
    for gamma in map(float, _GAMMAS.value):
        plan = dataclasses.replace(engine.plan, ascent_gamma=gamma)
        z, loss, accs = np.zeros(len(index)), np.zeros((2, len(index))), []
        for group in groups:
            z[group], loss[:, group], acc = _ascent_and_watch(ctx, plan, restored, index[group])
            accs.append(acc)
        fpr, tpr, _ = metrics.roc_curve(is_member, z)
        acc = np.mean(accs, axis=0)
        mem, out = loss[:, is_member].mean(1), loss[:, ~is_member].mean(1)
        print(
            f"| {gamma:g} | {acc[0]:.3f} | {acc[1]:.3f} | "
            f"{metrics.auc(fpr, tpr):.3f} | {metrics.tpr_at_fpr(fpr, tpr, 0.01):.3f} | "
            f"{mem[0]:.3f} -> {mem[1]:.3f} | {out[0]:.3f} -> {out[1]:.3f} |"
        )


def _ascent_and_watch(ctx, plan, restored, targets):
    """Round a with the ascent upload on `targets` (pool indices), round a+1 honest: the
    targets' relative loss drop, standardised per class (`membership.loss_drop`), their
    losses after each round ``[2, n]`` and the main-task accuracy after each round."""
    state, losses, a, pool_y = restored, [], ctx["a"], ctx["pool_y"]
    run = {k: ctx[k] for k in ("engine", "config", "setup", "clients", "keys", "test")}
    for t in (a, a + 1):
        inputs = adv.upload_inputs(
            plan,
            state.adversary,
            t,
            view=ctx["view"],
            keys=ctx["keys"].adversary,
            pool_x=ctx["pool_x"],
            pool_y=jnp.asarray(pool_y),
        )
        if inputs is not None:  # only these targets carry the ascent
            weight = np.zeros(inputs.weight.shape, np.float32)
            weight[:, targets] = 1.0
            inputs = inputs.replace(weight=jnp.asarray(weight))
        state = _step(state=state, inputs=inputs, **run)
        logits = ctx["engine"].adversary.pool_logits(state.server.params, ctx["pool_x"])
        losses.append(attack.record_losses(logits[0], jnp.asarray(pool_y))[targets])
    z = membership.loss_drop(losses[0][None], losses[1][None], jnp.asarray(pool_y[targets]), 10)
    return np.asarray(z), np.asarray(losses), np.asarray(state.log.accuracy[0])[[a - 1, a]]


def _step(*, engine, config, setup, state, clients, keys, test, inputs):
    """One round, and what the adversary keeps of it here: M_t and the update's norm."""
    last = state.server.params
    state, _ = run_round(engine, config, setup, state, clients, keys, test, inputs)
    norm = jax.vmap(optax.tree.norm)(jax.tree.map(jnp.subtract, state.server.params, last))
    return state.replace(
        adversary=state.adversary.replace(latest=state.server.params, last_update_norm=norm)
    )


if __name__ == "__main__":
    app.run(main)
