"""The adversary reads only what a participant has (paper Sec. III-D), in every mode.

Behaviour: after the federation has produced its global models, every *other*
participant's records (the victim's and the benign ones') are replaced by noise and the
adversary is replayed over the same global models with the same announcements: its
state, D_gen and every score must be bit-for-bit the same. As a control, perturbing the
adversary's *own* records does change what it computes, so the comparison can fail.

Signatures: no adversary function can even be handed the server's state, its keys, the
experimenter's log (other clients' losses) or the federation's client arrays.
"""

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedgan_jax.adversary import gan_config
from fedgan_jax.data.partition import ClientData
from fedgan_jax.driver import adversary as adv
from fedgan_jax.driver import adversary_attacks, adversary_plan, adversary_program
from fedgan_jax.driver.engine import common_capacity, deal_runs, place_clients, prepare, run_of
from fedgan_jax.driver.experiment import load_data
from fedgan_jax.driver.simulation import build_engine, federate, initial_state, run_keys
from fedgan_jax.driver.state import AdversaryKeys, ServerKeys

# The adversary's driver modules: their public functions are what it does.
ADVERSARY_MODULES = (adversary_plan, adversary_program, adv, adversary_attacks)
# What an adversary function may take (module doc of fedgan_jax/driver/adversary.py).
ALLOWED = {
    "section",  # check_config: its own config section
    "rounds",
    "program",
    "plan",
    "state",
    "params",
    "announced_accuracy",
    "t",
    "view",
    "keys",
    "pool_x",
    "pool_y",
    "logits",
    "victim_labels",
    "own_accuracy",
    "config",
    "classifier",
    "image_shape",
    "num_runs",
    "trainer",
    "grid_shape",
    "cls",
    "attacks",  # check_config: the configured attack names
    "num_participants",  # check_config: how many there are (the declared label sets say)
    "num_candidates",  # init_state: how many candidate records it watches
    "selected",  # observe: whether the server asked it to train this round (it knows)
}


def test_adversary_signatures_admit_only_its_own_inputs():
    public = [
        f
        for module in ADVERSARY_MODULES
        for name, f in vars(module).items()
        if inspect.isfunction(f) and f.__module__ == module.__name__ and not name.startswith("_")
    ]
    assert {f.__name__ for f in public} >= {"observe", "attack_targets", "init_state"}
    for f in public:
        params = set(inspect.signature(f).parameters)
        assert params <= ALLOWED, (f.__name__, params - ALLOWED)
        hints = " ".join(str(p.annotation) for p in inspect.signature(f).parameters.values())
        for forbidden in (
            "ServerState",
            "ServerKeys",
            "EvalLog",
            "ClientData",
            "RunState",
            "Keys]",
        ):
            assert forbidden not in hints, (f.__name__, forbidden)
    # The adversary's keys are its own streams: none of them is a server stream.
    assert not set(AdversaryKeys.__dataclass_fields__) & set(ServerKeys.__dataclass_fields__)


def _perturb(clients: ClientData, participants, seed: int) -> ClientData:
    rng = np.random.default_rng(seed)
    x, y = np.array(clients.x), np.array(clients.y)
    for p in participants:
        x[:, p] = rng.uniform(-1, 1, x[:, p].shape).astype(np.float32)
        y[:, p] = rng.integers(0, 10, y[:, p].shape)
    return ClientData(x=x, y=y, counts=clients.counts)


def _replay(engine, config, setup, recorded, clients, keys):
    """The adversary alone, over the recorded global models, announcements and the rounds
    it was asked to train in."""
    fl = config.fl
    view = adv.adversary_view(
        place_clients(clients, None),
        setup.declared,
        adversary=fl.adversary,
        victim=fl.victim,
        knows_declarations=config.adversary.knows_declarations,
    )
    params = recorded.server.params
    state = adv.init_state(
        engine.adversary,
        engine.plan,
        jax.tree.map(jnp.zeros_like, params),
        view,
        keys.adversary,
        grid_shape=recorded.adversary.grids["first"].shape[1:],
    )
    snaps = recorded.adversary.snapshots
    for t in range(1, fl.rounds + 1):
        m_t = jax.tree.map(lambda a, i=t - 1: a[:, i], snaps.params)
        announced = np.asarray(recorded.log.accuracy[:, t - 1])
        selected = recorded.adversary.selected
        state = adv.observe(
            engine.adversary,
            engine.plan,
            state,
            m_t,
            announced,
            t,
            view=view,
            keys=keys.adversary,
            selected=None if selected is None else np.asarray(selected[:, t - 1]),
        )
    return state, _attacks(engine, setup, state, view, keys)


def _attacks(engine, setup, state, view, keys):
    ds = setup.dataset
    return adversary_attacks.attack_targets(
        engine.adversary,
        engine.plan,
        state,
        view=view,
        keys=keys.adversary,
        pool_x=jnp.asarray(np.concatenate([ds.train_x, ds.test_x])),
        pool_y=jnp.asarray(np.concatenate([ds.train_y, ds.test_y])),
    )


def _assert_same(a, b):
    for field in ("x", "y", "soft", "target", "count"):
        np.testing.assert_array_equal(getattr(a["dgen"], field), getattr(b["dgen"], field))
    assert a["scores"].keys() == b["scores"].keys()
    for name in a["scores"]:
        np.testing.assert_array_equal(a["scores"][name], b["scores"][name])
        np.testing.assert_array_equal(a["decisions"][name], b["decisions"][name])


def _federate(config):
    dataset = load_data(config)
    run = run_of(config)
    engine = build_engine(config, dataset, 1)
    deals = deal_runs(config, dataset, [run])
    setup = prepare(config, dataset, deals, [run], common_capacity(config, deals))
    keys = run_keys(setup)
    clients = place_clients(setup.clients, None)
    fl = config.fl
    view = adv.adversary_view(
        clients,
        setup.declared,
        adversary=fl.adversary,
        victim=fl.victim,
        knows_declarations=config.adversary.knows_declarations,
    )
    state = initial_state(engine, config, setup, view, keys)
    test = (jnp.asarray(dataset.test_x), jnp.asarray(dataset.test_y))
    recorded = federate(
        engine, config, setup, state, clients=clients, view=view, keys=keys, test=test
    )
    return engine, setup, keys, view, recorded


@pytest.mark.parametrize("mode", gan_config.MODES)
def test_other_participants_records_change_nothing_the_adversary_computes(tiny, mode):
    config = tiny
    config.gan.mode = mode
    config.adversary.snapshot_every = 1  # record every global model for the replay
    config.attack.attacks = ("gan", "global_model", "loss_threshold")  # the adversary's
    fl = config.fl
    engine, setup, keys, view, recorded = _federate(config)
    original = _attacks(engine, setup, recorded.adversary, view, keys)

    others = [p for p in range(fl.num_participants) if p != fl.adversary]
    replayed, out = _replay(engine, config, setup, recorded, setup.clients, keys)
    noised, out_noise = _replay(
        engine, config, setup, recorded, _perturb(setup.clients, others, 1), keys
    )
    for state_b, out_b in ((replayed, out), (noised, out_noise)):
        _assert_same(original, out_b)
        chex.assert_trees_all_equal(state_b.gan, recorded.adversary.gan)
        np.testing.assert_array_equal(state_b.gan_start, recorded.adversary.gan_start)

    # Control: the adversary's own records do reach its computation (the loss threshold is
    # calibrated on them), so an adversary that read the others' records would be caught.
    _, own_noise = _replay(
        engine, config, setup, recorded, _perturb(setup.clients, [fl.adversary], 2), keys
    )
    assert not np.array_equal(
        own_noise["decisions"]["loss_threshold"], original["decisions"]["loss_threshold"]
    )
    if mode == "prior":  # the real-data prior trains on the adversary's own records
        assert not np.array_equal(own_noise["dgen"].x, original["dgen"].x)
    jax.clear_caches()


def test_hidden_declarations_recover_labels_from_what_the_adversary_has(tiny):
    """Label recovery (hidden declarations) reads the global models, its own records and
    whether it trained: the others' records change nothing it records, its own do."""
    config = tiny
    config.fl.rounds, config.fl.client_fraction = 6, 0.6
    config.adversary.snapshot_every = 1
    config.adversary.knows_declarations = False
    config.attack.attacks = ("global_model",)
    fl = config.fl
    engine, setup, keys, view, recorded = _federate(config)
    np.testing.assert_array_equal(np.asarray(view.declared)[:, fl.victim], True)  # told nothing
    selected = np.asarray(recorded.adversary.selected)
    assert selected.any() and not selected.all()  # it trained in some rounds only
    others = [p for p in range(fl.num_participants) if p != fl.adversary]
    replayed, _ = _replay(engine, config, setup, recorded, setup.clients, keys)
    noised, _ = _replay(engine, config, setup, recorded, _perturb(setup.clients, others, 1), keys)
    assert np.isfinite(replayed.recovery_signal).all()
    np.testing.assert_array_equal(noised.recovery_signal, replayed.recovery_signal)
    assert adv.recover_labels(engine.plan, noised) == adv.recover_labels(engine.plan, replayed)
    # Control: its own records feed its own update, which it removes from the change.
    own, _ = _replay(
        engine, config, setup, recorded, _perturb(setup.clients, [fl.adversary], 2), keys
    )
    assert not np.array_equal(own.recovery_signal, replayed.recovery_signal)
    jax.clear_caches()
