"""FedAvg, the client update and the jitted round, on problems small enough to check by hand."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedgan_jax.data.partition import ClientData
from fedgan_jax.federation import fedavg as federated
from fedgan_jax.nn import training


def linear_apply(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def linear_params(key, dim=6, classes=3):
    return {"w": 0.1 * jax.random.normal(key, (dim, classes)), "b": jnp.zeros(classes)}


def make_clients(key, counts, capacity, dim=6, classes=3, pad_value=0.0):
    """Random client data, records beyond each count filled with `pad_value`."""
    n = len(counts)
    kx, ky = jax.random.split(key)
    x = np.asarray(jax.random.normal(kx, (n, capacity, dim, 1, 1)))
    y = np.asarray(jax.random.randint(ky, (n, capacity), 0, classes), np.int32)
    valid = np.arange(capacity)[None] < np.asarray(counts)[:, None]
    x = np.where(valid[..., None, None, None], x, pad_value).astype(np.float32)
    y = np.where(valid, y, 0).astype(np.int32)
    return ClientData(x=jnp.asarray(x), y=jnp.asarray(y), counts=jnp.asarray(counts, jnp.int32))


def _weighted_mean(global_params, client_params, weights):
    """Reference FedAvg (paper Eq. 1), written out: M + sum_k w_k (W_k - M) / sum_k w_k."""
    w = np.asarray(weights, np.float64)
    return jax.tree.map(
        lambda g, c: np.asarray(g) + np.tensordot(w, np.asarray(c) - np.asarray(g), 1) / w.sum(),
        global_params,
        client_params,
    )


def _shift_update(params, x, y, count, key, learning_rate):
    """A client whose new params are the global ones plus its first pixel: a known upload."""
    del y, key, learning_rate
    new = jax.tree.map(lambda p: p + x[0, 0, 0, 0], params)
    metrics = {"loss": x[0, 0, 0, 0], "steps": count, "finite": jnp.bool_(True)}
    return new, metrics


def _shift_clients(shifts, counts):
    x = np.zeros((len(shifts), 4, 1, 1, 1), np.float32)
    x[:, 0, 0, 0, 0] = shifts
    return ClientData(
        x=jnp.asarray(x),
        y=jnp.zeros((len(shifts), 4), jnp.int32),
        counts=jnp.asarray(counts, jnp.int32),
    )


@pytest.mark.parametrize("chunk", [0, 1, 2])
def test_round_is_the_example_weighted_mean_by_hand(chunk):
    g = {"a": jnp.array([0.0, 0.0]), "b": jnp.array(1.0)}
    clients = _shift_clients([1.0, 3.0, 5.0], [1, 2, 4])
    round_fn = federated.make_round(_shift_update, num_clients=3, client_chunk=chunk)
    out, _ = jax.jit(round_fn)(g, clients, jax.random.key(0), 0.1)
    # weights 1/7, 2/7, 4/7: shift = (1*1 + 2*3 + 4*5) / 7 = 27/7
    np.testing.assert_allclose(out["a"], [27 / 7, 27 / 7], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 1 + 27 / 7, rtol=1e-6)
    uniform = federated.make_round(_shift_update, num_clients=3, weighting="uniform")
    out, _ = jax.jit(uniform)(g, clients, jax.random.key(0), 0.1)
    np.testing.assert_allclose(out["a"], [3.0, 3.0], rtol=1e-6)


def test_round_ignores_zero_count_clients():
    g = {"w": jnp.zeros(3)}
    clients = _shift_clients([1.0, 100.0], [4, 0])
    out, _ = jax.jit(federated.make_round(_shift_update, num_clients=2))(
        g, clients, jax.random.key(0), 0.1
    )
    np.testing.assert_allclose(out["w"], [1.0, 1.0, 1.0])


def test_adversary_upload_replaces_only_its_slot_and_gets_only_its_inputs():
    """The adversary's update function runs in its slot (and only there), with what the
    adversary passes; everyone else trains honestly."""
    g = {"w": jnp.zeros(2)}
    clients = _shift_clients([1.0, 2.0, 4.0], [1, 1, 1])
    seen = {}

    def malicious(inputs, global_params, x, y, count, learning_rate):
        seen["x"] = x  # traced: its own records only
        new = jax.tree.map(lambda p: p + inputs["boost"], global_params)
        return new, {"loss": inputs["boost"], "steps": count, "finite": jnp.bool_(True)}

    for chunk in (0, 1):
        round_fn = federated.make_round(
            _shift_update,
            num_clients=3,
            client_chunk=chunk,
            adversary=2,
            adversary_update=malicious,
        )
        out, metrics = jax.jit(round_fn)(g, clients, jax.random.key(0), 0.1, {"boost": 10.0})
        # clients 0 and 1 upload +1 and +2, the adversary (slot 2) +10 instead of +4
        np.testing.assert_allclose(out["w"], [13 / 3, 13 / 3], rtol=1e-6)
        np.testing.assert_allclose(metrics["loss"], [1.0, 2.0, 10.0])
    assert seen["x"].shape == clients.x.shape[1:]
    honest = federated.make_round(_shift_update, num_clients=3, adversary=2)
    out, _ = jax.jit(honest)(g, clients, jax.random.key(0), 0.1, {"boost": 10.0})
    np.testing.assert_allclose(out["w"], [7 / 3, 7 / 3], rtol=1e-6)  # inputs ignored


LR = 0.5


def _client_update(epochs=2, batch=4):
    return federated.make_client_update(linear_apply, local_epochs=epochs, batch_size=batch)


def test_client_update_lowers_the_loss():
    key = jax.random.key(0)
    data = make_clients(key, [20], 20)
    params = linear_params(jax.random.key(1))
    update = jax.jit(_client_update(epochs=5))

    def loss(p):
        return training.masked_cross_entropy(
            linear_apply(p, data.x[0]), data.y[0], jnp.ones(20, bool)
        )

    new, metrics = update(params, data.x[0], data.y[0], data.counts[0], jax.random.key(2), LR)
    assert float(loss(new)) < 0.8 * float(loss(params))
    assert bool(metrics["finite"])
    assert int(metrics["steps"]) == 5 * 5  # 20 records / batch 4 = 5 steps, 5 epochs


def test_padding_content_changes_nothing():
    """Records beyond the count never reach a gradient, whatever they hold."""
    params = linear_params(jax.random.key(1))
    update = jax.jit(_client_update())
    zeros = make_clients(jax.random.key(0), [7], 12, pad_value=0.0)
    garbage = make_clients(jax.random.key(0), [7], 12, pad_value=1e6)
    a, _ = update(params, zeros.x[0], zeros.y[0], zeros.counts[0], jax.random.key(3), LR)
    b, _ = update(params, garbage.x[0], garbage.y[0], garbage.counts[0], jax.random.key(3), LR)
    chex.assert_trees_all_close(a, b, rtol=0, atol=0)


def test_empty_steps_are_skipped():
    """With 5 records, batch 4 and capacity 16 an epoch has 2 real steps of 4."""
    params = linear_params(jax.random.key(1))
    data = make_clients(jax.random.key(0), [5], 16)
    _, metrics = jax.jit(_client_update(epochs=3))(
        params, data.x[0], data.y[0], data.counts[0], jax.random.key(3), LR
    )
    assert int(metrics["steps"]) == 6


def test_padding_batches_never_step_the_optimizer():
    """Batches of padding only are skipped, not run with a zero gradient: with momentum
    a run one would still move the parameters. The trainer equals a Python loop over each
    epoch's real batches of `pass_order`; the same trainer on every batch would not, and
    under vmap (a client of 5 records beside one of 13) each client gets its own count."""
    params = linear_params(jax.random.key(1))
    data = make_clients(jax.random.key(0), [5, 13], 16)
    opt = optax.sgd(0.1, momentum=0.9)
    trainer = training.make_trainer(linear_apply, opt, epochs=3, batch_size=4)
    key = jax.random.key(3)

    def reference(x, y, count):
        p, state = params, opt.init(params)
        for epoch_key in jax.random.split(key, 3):
            order = training.pass_order(epoch_key, count, 16, 16, cycle=False).reshape(4, 4)
            for idx in order:
                if not bool(jnp.any(idx < count)):
                    continue
                mask = idx < count
                grads = jax.grad(
                    lambda q, i=idx, m=mask: training.masked_cross_entropy(
                        linear_apply(q, x[jnp.minimum(i, 15)]), y[jnp.minimum(i, 15)], m
                    )
                )(p)
                updates, state = opt.update(grads, state, p)
                p = optax.apply_updates(p, updates)
        return p

    got, metrics = jax.jit(jax.vmap(trainer, (None, 0, 0, 0, None)))(
        params, data.x, data.y, data.counts, key
    )
    np.testing.assert_array_equal(metrics["steps"], [6, 12])
    for c in range(2):
        want = reference(data.x[c], data.y[c], data.counts[c])
        client = jax.tree.map(lambda a, c=c: a[c], got)
        chex.assert_trees_all_close(client, want, rtol=1e-5, atol=1e-6)
    alone, _ = jax.jit(trainer)(params, data.x[0], data.y[0], data.counts[0], key)
    chex.assert_trees_all_close(alone, jax.tree.map(lambda a: a[0], got), rtol=1e-6, atol=1e-7)


def _steps_update(steps, batch=4):
    return federated.make_client_update(
        linear_apply, local_epochs=3, batch_size=batch, local_steps=steps
    )


def test_local_steps_run_exactly_that_many_full_batches():
    """local_steps replaces the epochs: 7 steps whatever the epoch count, cycling through
    5 records (padding at 1e6 would blow the loss up if a cycled index reached it)."""
    params = linear_params(jax.random.key(1))
    data = make_clients(jax.random.key(0), [5, 0], 16, pad_value=1e6)
    update = jax.jit(_steps_update(7))
    new, metrics = update(params, data.x[0], data.y[0], data.counts[0], jax.random.key(3), LR)
    assert int(metrics["steps"]) == 7
    assert bool(metrics["finite"]) and float(metrics["loss"]) < 10.0
    same, empty = update(params, data.x[1], data.y[1], data.counts[1], jax.random.key(3), LR)
    assert int(empty["steps"]) == 0
    chex.assert_trees_all_close(same, params, rtol=0, atol=0)  # an empty client moves nothing


def test_one_epoch_of_local_steps_is_one_epoch():
    """count / batch local steps visit the records in the epoch's order: the same params
    as local_epochs=1 from the same key; twice as many steps cycle and differ from it."""
    params = linear_params(jax.random.key(1))
    data = make_clients(jax.random.key(0), [20], 24)
    args = (data.x[0], data.y[0], data.counts[0], jax.random.key(3), LR)
    epoch, _ = jax.jit(_client_update(epochs=1))(params, *args)
    steps, _ = jax.jit(_steps_update(5))(params, *args)
    chex.assert_trees_all_close(epoch, steps, rtol=1e-6, atol=1e-7)
    longer, _ = jax.jit(_steps_update(10))(params, *args)
    assert not np.allclose(longer["w"], epoch["w"])


def _reference_round(update, params, clients, key, chosen, weights):
    """Each chosen client one by one, then the weighted mean, all in plain Python."""
    _, train_key = jax.random.split(key)
    results = []
    for c in chosen:
        k = jax.random.fold_in(train_key, c)
        new, _ = update(params, clients.x[c], clients.y[c], clients.counts[c], k, LR)
        results.append(new)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *results)
    return _weighted_mean(params, stacked, weights)


@pytest.mark.parametrize("chunk", [0, 1, 2, 3])
@pytest.mark.parametrize("weighting", ["examples", "uniform"])
def test_round_equals_clients_one_by_one(chunk, weighting):
    counts = [9, 3, 12, 6]
    clients = make_clients(jax.random.key(0), counts, 12, pad_value=3.0)
    params = linear_params(jax.random.key(1))
    update = _client_update()
    round_fn = jax.jit(
        federated.make_round(update, num_clients=4, client_chunk=chunk, weighting=weighting)
    )
    key = jax.random.key(7)
    new, metrics = round_fn(params, clients, key, LR)
    weights = counts if weighting == "examples" else [1, 1, 1, 1]
    expected = _reference_round(jax.jit(update), params, clients, key, range(4), weights)
    chex.assert_trees_all_close(new, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(metrics["client"], np.arange(4))
    assert metrics["loss"].shape == (4,)


def test_partial_participation_uses_only_the_chosen_clients():
    counts = [8, 8, 8, 8, 8]
    clients = make_clients(jax.random.key(0), counts, 8)
    params = linear_params(jax.random.key(1))
    update = _client_update()
    round_fn = jax.jit(federated.make_round(update, num_clients=5, clients_per_round=2))
    key = jax.random.key(3)
    new, metrics = round_fn(params, clients, key, LR)
    chosen = np.asarray(metrics["client"])
    assert len(chosen) == 2 and len(set(chosen.tolist())) == 2
    expected = _reference_round(jax.jit(update), params, clients, key, chosen, [8, 8])
    chex.assert_trees_all_close(new, expected, rtol=1e-5, atol=1e-6)
    # Another client's data does not matter this round.
    other = int(np.setdiff1d(np.arange(5), chosen)[0])
    x = clients.x.at[other].set(100.0)
    new2, _ = round_fn(params, clients.replace(x=x), key, LR)
    chex.assert_trees_all_close(new, new2, rtol=0, atol=0)
    # The selection is seeded by the round key: over rounds every client takes part.
    seen = set()
    for t in range(20):
        _, m = round_fn(params, clients, jax.random.fold_in(key, t), LR)
        seen.update(np.asarray(m["client"]).tolist())
    assert seen == set(range(5))


def test_round_compiles_once_across_rounds():
    clients = make_clients(jax.random.key(0), [6, 4, 8], 8)
    params = linear_params(jax.random.key(1))
    round_fn = federated.make_round(_client_update(), num_clients=3)
    traced = jax.jit(chex.assert_max_traces(round_fn, n=1))
    for t in range(4):  # a new key and learning rate every round: no retrace
        params, _ = traced(params, clients, jax.random.key(t), np.float32(0.5 / (t + 1)))
    # A new label deal with the same shapes reuses the compiled round as well.
    other = make_clients(jax.random.key(9), [8, 2, 5], 8)
    traced(params, other, jax.random.key(99), np.float32(0.1))


def test_round_with_cnn_and_sgd_matches_optax_sgd_step():
    """One client, one full batch, one epoch: the update is exactly W - lr * grad (Eq. 2)."""
    from fedgan_jax.nn import models

    model = models.classifier("mnist", "im2col")
    params = models.init_params(model, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))

    def apply(p, x):
        return model.apply({"params": p}, x)

    x = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
    y = jnp.arange(8) % 10
    update = federated.make_client_update(apply, local_epochs=1, batch_size=8)
    new, _ = jax.jit(update)(params, x, y, jnp.int32(8), jax.random.key(2), 0.1)
    grads = jax.grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()
    )(params)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    chex.assert_trees_all_close(new, expected, rtol=1e-4, atol=1e-6)


def test_learning_rate_schedules():
    lr = federated.learning_rate_at
    assert lr(7, base=0.1, rounds=10) == 0.1
    assert lr(1, base=0.1, rounds=10, schedule="cosine") == pytest.approx(0.1)
    # halfway (t - 1 = 5 of 10): 0.5 * (1 + cos(pi / 2)) = 0.5 of the way to the floor
    assert lr(6, base=0.1, rounds=10, schedule="cosine", final_fraction=0.2) == pytest.approx(
        0.02 + 0.5 * 0.08
    )
    with pytest.raises(ValueError, match="lr_schedule"):
        lr(1, base=0.1, rounds=10, schedule="step")


def test_dp_fedavg_clips_every_update_and_adds_calibrated_noise():
    counts = [12, 12, 12, 12]
    clients = make_clients(jax.random.key(0), counts, 12, dim=400)
    params = linear_params(jax.random.key(1), dim=400)
    update = _client_update(epochs=3)
    plain = jax.jit(federated.make_round(update, num_clients=4, weighting="uniform"))
    clipped = jax.jit(
        federated.make_round(update, num_clients=4, weighting="uniform", clip_norm=0.05)
    )
    key = jax.random.key(5)
    free, _ = plain(params, clients, key, LR)
    new, metrics = clipped(params, clients, key, LR)
    assert (np.asarray(metrics["update_norm"]) > 0.05).all()  # clipping is active
    step = optax.tree.norm(jax.tree.map(jnp.subtract, new, params))
    assert float(step) <= 0.05 + 1e-6  # a mean of updates of norm <= C
    # A clip far above every update's norm changes nothing.
    loose = jax.jit(federated.make_round(update, num_clients=4, weighting="uniform", clip_norm=1e6))
    chex.assert_trees_all_close(loose(params, clients, key, LR)[0], free, rtol=1e-6, atol=1e-7)
    # Noise: std = z * C / m per coordinate, on top of the clipped mean.
    noisy = jax.jit(
        federated.make_round(
            update, num_clients=4, weighting="uniform", clip_norm=0.05, noise_multiplier=2.0
        )
    )
    out, _ = noisy(params, clients, key, LR)
    diff = np.asarray(out["w"] - new["w"]).ravel()
    assert abs(diff.std() / (2.0 * 0.05 / 4) - 1) < 0.1 and abs(diff.mean()) < 0.01
    with pytest.raises(ValueError, match="clip_norm"):
        federated.make_round(update, num_clients=4, noise_multiplier=1.0)


def test_a_batch_wider_than_the_client_is_one_full_batch_step():
    """batch_size 64 over a client of 5 records in a capacity of 16: each epoch is one SGD
    step on the mean loss of exactly those 5 records (a DataLoader's short last batch)."""
    params = linear_params(jax.random.key(1))
    data = make_clients(jax.random.key(0), [5], 16)
    x, y = data.x[0], data.y[0]
    trainer = training.make_trainer(linear_apply, optax.sgd(0.5), epochs=2, batch_size=64)
    got, metrics = jax.jit(trainer)(params, x, y, data.counts[0], jax.random.key(3))
    assert int(metrics["steps"]) == 2
    want = params
    for _ in range(2):  # by hand: two full-batch gradient steps on the 5 real records
        grads = jax.grad(
            lambda p: optax.softmax_cross_entropy_with_integer_labels(
                linear_apply(p, x[:5]), y[:5]
            ).mean()
        )(want)
        want = jax.tree.map(lambda p, g: p - 0.5 * g, want, grads)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
