"""The adversary reads no victim data (paper Sec. III-D), in every generator mode.

After the federation has produced its global models, the victim's records are replaced by
noise and the adversary is replayed over the same global models: D_gen and every score it
computes must be bit-for-bit the same. As a control, perturbing the adversary's *own*
records does change what it computes, so the comparison can fail.
"""

import jax
import numpy as np
import pytest

from fedgan_jax import gan
from fedgan_jax.adversary import adversary_view
from fedgan_jax.engine import Engine, common_capacity, prepare, run_of
from fedgan_jax.experiment import load_data
from fedgan_jax.partition import ClientData
from fedgan_jax.simulation import (
    adversary_attacks,
    adversary_observes,
    federate,
    initial_state,
    snapshot,
)


def _replay(engine, setup, recorded, clients, keys):
    """The adversary alone, over the recorded global models, with this client data."""
    fl = engine.config.fl
    view = adversary_view(
        engine.put(clients), engine.put(setup.declared), adversary=fl.adversary, victim=fl.victim
    )
    state = initial_state(engine, setup, view, keys)
    for t in range(1, fl.rounds + 1):
        params = engine.put(snapshot(recorded, t))
        accuracy = recorded["history"]["accuracy"][:, t - 1]
        state = adversary_observes(engine, state, params, accuracy, t, view=view, keys=keys)
    state["params"] = recorded["params"]
    return _attacks(engine, setup, state, view, keys)


def _attacks(engine, setup, state, view, keys):
    """The adversary's side of the attack phase, on the whole pool of records."""
    ds = setup.dataset
    return adversary_attacks(
        engine,
        state,
        view=view,
        keys=keys,
        pool_x=np.concatenate([ds.train_x, ds.test_x]),
        pool_y=np.concatenate([ds.train_y, ds.test_y]),
    )


def _perturb(clients: ClientData, participant: int, seed: int) -> ClientData:
    rng = np.random.default_rng(seed)
    x, y = clients.x.copy(), clients.y.copy()
    x[:, participant] = rng.uniform(-1, 1, x[:, participant].shape).astype(np.float32)
    y[:, participant] = rng.integers(0, 10, y[:, participant].shape)
    return ClientData(x=x, y=y, counts=clients.counts)


@pytest.mark.parametrize("mode", gan.MODES)
def test_replacing_victim_records_changes_nothing_the_adversary_computes(tiny, mode):
    config = tiny
    config.gan.mode = mode
    config.adversary.snapshot_every = 1  # record every global model for the replay
    config.attack.attacks = ("gan", "global_model", "loss_threshold")  # the adversary's
    dataset = load_data(config)
    run = run_of(config)
    engine = Engine(config, dataset, num_runs=1)
    setup = prepare(config, dataset, [run], common_capacity(config, dataset, [run]))
    keys = engine.run_keys([run])
    clients = engine.place_clients(setup.clients)
    fl = config.fl
    view = adversary_view(
        clients, engine.put(setup.declared), adversary=fl.adversary, victim=fl.victim
    )
    state = initial_state(engine, setup, view, keys)
    test = (dataset.test_x, dataset.test_y)
    recorded = federate(engine, setup, state, clients=clients, view=view, keys=keys, test=test)
    original = _attacks(engine, setup, recorded, view, keys)

    replayed = _replay(engine, setup, recorded, setup.clients, keys)
    victim_noise = _replay(engine, setup, recorded, _perturb(setup.clients, fl.victim, 1), keys)
    for out in (replayed, victim_noise):
        for field in ("x", "y", "soft", "target", "count"):
            np.testing.assert_array_equal(
                getattr(out["dgen"], field), getattr(original["dgen"], field)
            )
        for attack in original["scores"]:
            np.testing.assert_array_equal(out["scores"][attack], original["scores"][attack])
            np.testing.assert_array_equal(out["decisions"][attack], original["decisions"][attack])

    # Control: the adversary's own records do reach its computation (the loss threshold is
    # calibrated on them), so an adversary that read the victim's records would be caught.
    own_noise = _replay(engine, setup, recorded, _perturb(setup.clients, fl.adversary, 2), keys)
    assert not np.array_equal(
        own_noise["decisions"]["loss_threshold"], original["decisions"]["loss_threshold"]
    )
    if mode == "prior":  # the real-data prior trains on the adversary's own records
        assert not np.array_equal(own_noise["dgen"].x, original["dgen"].x)
    jax.clear_caches()
