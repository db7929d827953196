"""LiRA by a participant: shadow federations and the likelihood-ratio test (Carlini et
al., "Membership Inference Attacks From First Principles", S&P 2022).

The adversary knows its own records, the candidate records it is asked about (with their
labels, not their membership), the declared label sets, the federation's hyper-parameters
and the global models it receives. From these it simulates S shadow federations of the
real one's shape, in each of which every candidate is IN (held by the victim) or OUT:

1. `shadow_masks`: which candidates are IN in which shadow. Every candidate is IN in
   exactly ``S // 2`` shadows, chosen at random (Carlini's ``keep`` masks), so its IN and
   OUT statistics come from equally many models.
2. `shadow_clients`: the shadows' padded client arrays ``[S, N, capacity, ...]``. In
   shadow s the victim's slot holds the candidates IN in s, the adversary's slot its own
   records. Another participant's slot holds the OUT candidates of the labels it declared
   (each such candidate goes to one fixed declaring participant: where it would be if it
   were a training record at all); OUT candidates of labels only the victim declared are
   in no slot (a held-out record of the victim's classes is trained by nobody). A slot
   left empty holds a copy of the adversary's own records, so every participant trains
   and the victim's share of the average stays near the real one's when the real
   participants hold about as many records each. The adversary cannot know the others'
   real records; this is the assumption its shadows make.
3. `train_shadows`: the S federations trained from fresh inits with the real federation's
   `Federation` (the same hyper-parameters) to the same round, as ONE compiled program:
   ``jax.vmap`` over the shadow axis or ``jax.lax.map`` (one shadow after another inside
   the program; on a 2-core CPU the faster, see docs/lira.md). Optionally it keeps the
   global params at chosen rounds (the snapshot variant).
4. `lira_scores`: the logit-scaled confidence ``phi = log p_y - log(1 - p_y)`` of every
   candidate under every shadow; per candidate, Gaussians of phi over its IN shadows and
   its OUT shadows (centre: the median, spread: the standard deviation, as Carlini's
   code). Online: score = ``log N(phi_target; mu_in, s_in) - log N(phi_target; mu_out,
   s_out)``. Offline (OUT shadows only), the one-sided test: score = ``-log P(Z >=
   phi_target)`` with Z ~ N(mu_out, s_out), i.e. minus the log p-value of the target's
   confidence under OUT; it ranks candidates as the standardised distance
   ``(phi_target - mu_out) / s_out`` does. ``global_variance``: one s_in and one s_out
   for all candidates, the pooled within-candidate variance (for small S, where a
   per-candidate variance from S/2 values is noisy; Carlini's code pools the raw values
   instead, which adds the spread between candidates). Higher scores are more
   member-like. `lira_snapshot_scores`: the sum of the per-round scores over K kept
   rounds, each against the shadows' params of that round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from fedgan_jax.adversary import membership
from fedgan_jax.adversary.view import AdversaryView
from fedgan_jax.core.errors import ConfigError
from fedgan_jax.core.types import ApplyFn, Params, PRNGKey
from fedgan_jax.data.partition import ClientData
from fedgan_jax.federation.server import Federation
from fedgan_jax.nn.training import batched_apply

RUN_AXES = ("map", "vmap")
_TINY = 1e-30  # added to every standard deviation (a candidate fit identically by all)


def shadow_masks(key: PRNGKey, num_candidates: int, num_shadows: int) -> jax.Array:
    """``bool [S, n]``: candidate j is IN in shadow s. Every candidate is IN in exactly
    ``S // 2`` shadows (a uniformly random choice per candidate); each shadow holds about
    half the candidates."""
    if num_shadows < 2:
        raise ConfigError(f"num_shadows={num_shadows}: LiRA needs at least 2 shadows")
    draws = jax.random.uniform(key, (num_shadows, num_candidates))
    rank = jnp.argsort(jnp.argsort(draws, axis=0), axis=0)
    return rank < num_shadows // 2


def _slots_for_out(view: AdversaryView, y: np.ndarray) -> np.ndarray:
    """The slot each candidate takes when OUT: a participant other than the victim and
    the adversary that declared its label (the j-th candidate of a label shared by h
    such participants goes to the (j mod h)-th), or -1: none."""
    declared = np.asarray(view.declared, bool)
    victim, adversary = int(view.victim), int(view.adversary)
    holders = declared.copy()
    holders[[victim, adversary]] = False
    slot = np.full(len(y), -1, np.int64)
    for j, label in enumerate(y):
        who = np.flatnonzero(holders[:, label])
        if len(who):
            slot[j] = who[j % len(who)]
    return slot


def shadow_clients(
    view: AdversaryView,
    masks: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    capacity: int | None = None,
    multiple_of: int = 1,
) -> ClientData:
    """The S shadow federations' padded clients ``[S, N, capacity, ...]`` (module doc,
    step 2) from the adversary's `view` (one run), ``masks [S, n]`` and the candidates
    ``(x [n, ...], y [n])``. `capacity` defaults to the largest slot, rounded up to
    `multiple_of`; a given one too small raises `ConfigError`."""
    masks, x, y = np.asarray(masks, bool), np.asarray(x, np.float32), np.asarray(y)
    num_shadows, n = masks.shape
    if x.shape[0] != n or y.shape != (n,):
        raise ConfigError(f"masks {masks.shape}, x {x.shape}, y {y.shape}: n must agree")
    num_clients = np.asarray(view.declared).shape[0]
    victim, adversary = int(view.victim), int(view.adversary)
    own_count = int(view.own_count)
    own = np.arange(own_count) + n  # own records, indexed after the candidates
    pool_x = np.concatenate([x, np.asarray(view.own_x)[:own_count]])
    pool_y = np.concatenate([y, np.asarray(view.own_y)[:own_count]]).astype(np.int32)
    out_slot = _slots_for_out(view, y)
    held = [[None] * num_clients for _ in range(num_shadows)]
    for s in range(num_shadows):
        for i in range(num_clients):
            if i == victim:
                idx = np.flatnonzero(masks[s])
            elif i == adversary:
                idx = own
            else:
                idx = np.flatnonzero(~masks[s] & (out_slot == i))
                idx = idx if len(idx) else own
            held[s][i] = idx
    largest = max(len(idx) for row in held for idx in row)
    needed = -(-largest // multiple_of) * multiple_of
    if capacity is None:
        capacity = needed
    elif capacity < largest:
        raise ConfigError(f"shadow capacity {capacity} < largest shadow slot ({largest})")
    cx = np.zeros((num_shadows, num_clients, capacity, *x.shape[1:]), np.float32)
    cy = np.zeros((num_shadows, num_clients, capacity), np.int32)
    counts = np.zeros((num_shadows, num_clients), np.int32)
    for s, row in enumerate(held):
        for i, idx in enumerate(row):
            cx[s, i, : len(idx)], cy[s, i, : len(idx)] = pool_x[idx], pool_y[idx]
            counts[s, i] = len(idx)
    return ClientData(x=cx, y=cy, counts=counts)


class Shadows(NamedTuple):
    """The shadows' final global params (leading S axis) and, with kept rounds, their
    params at those rounds (leading ``[S, K]`` axes; None without)."""

    params: Params
    snapshots: Params | None


def shadow_program(
    fed: Federation,
    init_fn: Callable[[PRNGKey], Params],
    *,
    rounds: int,
    keep_rounds: Sequence[int] = (),
) -> Callable[[ClientData, PRNGKey], tuple[Params, Params | None]]:
    """``one(clients, key) -> (params, snapshots)``: one federation of `fed` trained from
    ``init_fn(init_key)`` for `rounds` rounds on ``clients [N, capacity, ...]``, keeping
    the global params after each round of `keep_rounds` (1-based, increasing; stacked on
    a leading K axis). Keys: ``init_key, run_key = split(key)``, round t uses
    ``fold_in(run_key, t)``: the same as a Python loop of ``fed.round`` calls."""
    keep = tuple(int(t) for t in keep_rounds)
    if any(b <= a for a, b in zip(keep, keep[1:], strict=False)) or (
        keep and not 1 <= keep[0] <= keep[-1] <= rounds
    ):
        raise ConfigError(f"keep_rounds={keep}: must increase within [1, {rounds}]")

    def one(clients: ClientData, key: PRNGKey):
        init_key, run_key = jax.random.split(key)
        state = fed.init(init_fn(init_key))

        def step(state, t):
            state, _ = fed.round(state, clients, jax.random.fold_in(run_key, t))
            return state, None

        kept, done = [], 0
        for t in (*keep, rounds):
            state, _ = jax.lax.scan(step, state, jnp.arange(done + 1, t + 1))
            kept.append(state.params)
            done = t
        snapshots = jax.tree.map(lambda *p: jnp.stack(p), *kept[:-1]) if keep else None
        return state.params, snapshots

    return one


def make_shadow_trainer(
    fed: Federation,
    init_fn: Callable[[PRNGKey], Params],
    *,
    rounds: int,
    keep_rounds: Sequence[int] = (),
    run_axis: str = "map",
) -> Callable[[ClientData, PRNGKey], Shadows]:
    """``train(clients [S, N, capacity, ...], key) -> Shadows``, jitted once: the S shadow
    federations as one program, `shadow_program` over the shadow axis by ``jax.vmap``
    (`run_axis` ``vmap``) or ``jax.lax.map`` (``map``). Shadow s runs on key
    ``fold_in(key, s)``; `fed` is the real federation's (same hyper-parameters)."""
    if run_axis not in RUN_AXES:
        raise ConfigError(f"run_axis={run_axis!r}: one of {RUN_AXES}")
    one = shadow_program(fed, init_fn, rounds=rounds, keep_rounds=keep_rounds)

    @jax.jit
    def program(clients, key):
        num_shadows = clients.counts.shape[0]
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_shadows))
        if run_axis == "vmap":
            return jax.vmap(one)(clients, keys)
        return jax.lax.map(lambda a: one(*a), (clients, keys))

    def train(clients: ClientData, key: PRNGKey) -> Shadows:
        params, snapshots = program(jax.tree.map(jnp.asarray, clients), key)
        return Shadows(params=params, snapshots=snapshots)

    return train


def train_shadows(
    fed: Federation,
    init_fn: Callable[[PRNGKey], Params],
    clients: ClientData,
    key: PRNGKey,
    *,
    rounds: int,
    keep_rounds: Sequence[int] = (),
    run_axis: str = "map",
) -> Shadows:
    """Trains the S shadow federations of ``clients [S, N, capacity, ...]`` (e.g. from
    `shadow_clients`) to round `rounds`: `make_shadow_trainer` called once."""
    trainer = make_shadow_trainer(
        fed, init_fn, rounds=rounds, keep_rounds=keep_rounds, run_axis=run_axis
    )
    return trainer(clients, key)


def _masked_median(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Per column of ``values [S, n]``, the median of the rows where `mask` holds."""
    count = mask.sum(0)
    ordered = jnp.sort(jnp.where(mask, values, jnp.inf), axis=0)
    lo = jnp.take_along_axis(ordered, (jnp.maximum(count - 1, 0) // 2)[None], axis=0)[0]
    hi = jnp.take_along_axis(ordered, (count // 2)[None], axis=0)[0]
    return (lo + hi) / 2


def _gaussian(values: jax.Array, mask: jax.Array, global_variance: bool):
    """(centre [n], std [n]) of each column's masked values (module doc)."""
    count = jnp.maximum(mask.sum(0), 1)
    mean = jnp.where(mask, values, 0.0).sum(0) / count
    squares = jnp.where(mask, (values - mean) ** 2, 0.0)
    if global_variance:
        var = jnp.full(mean.shape, squares.sum() / jnp.maximum(mask.sum(), 1))
    else:
        var = squares.sum(0) / count
    return _masked_median(values, mask), jnp.sqrt(var) + _TINY


def likelihood_ratio(
    target: jax.Array,
    shadows: jax.Array,
    masks: jax.Array,
    *,
    online: bool = True,
    global_variance: bool = False,
) -> jax.Array:
    """LiRA's score ``[n]`` from the target model's statistic ``target [n]`` and the
    shadows' ``shadows [S, n]`` with ``masks [S, n]`` (IN): online, the log-likelihood
    ratio of the IN and OUT Gaussians; offline, ``-log P(Z >= target)`` under OUT."""
    masks = jnp.asarray(masks, bool)
    mu_out, sd_out = _gaussian(shadows, ~masks, global_variance)
    if not online:
        return -norm.logcdf(-(target - mu_out) / sd_out)
    mu_in, sd_in = _gaussian(shadows, masks, global_variance)
    return norm.logpdf(target, mu_in, sd_in) - norm.logpdf(target, mu_out, sd_out)


def _confidence(apply_fn, params, x, y, batch_size):
    return membership.logit_confidence(batched_apply(apply_fn, params, x, batch_size), y)


def lira_scores(
    apply_fn: ApplyFn,
    target_params: Params,
    shadow_params: Params,
    masks: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    online: bool = True,
    global_variance: bool = False,
    batch_size: int = 256,
) -> jax.Array:
    """LiRA's membership score ``[n]`` of the candidates ``(x, y)`` under the real global
    model `target_params`, from the shadows' params (leading S axis) and their ``masks
    [S, n]`` (module doc, step 4). Higher is more member-like."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    target = _confidence(apply_fn, target_params, x, y, batch_size)
    shadows = jax.lax.map(lambda p: _confidence(apply_fn, p, x, y, batch_size), shadow_params)
    return likelihood_ratio(target, shadows, masks, online=online, global_variance=global_variance)


def lira_snapshot_scores(
    apply_fn: ApplyFn,
    target_snapshots: Params,
    shadow_snapshots: Params,
    masks: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    online: bool = True,
    global_variance: bool = False,
    batch_size: int = 256,
) -> jax.Array:
    """The sum over K kept rounds of `lira_scores`, round k's real global params
    (`target_snapshots`, leading K axis) against the shadows' of the same round
    (`shadow_snapshots`, leading ``[S, K]`` axes, `Shadows.snapshots`) ``[n]``."""
    per_round = jax.tree.map(lambda p: jnp.moveaxis(p, 1, 0), shadow_snapshots)

    def score(pair):
        target, shadows = pair
        return lira_scores(
            apply_fn,
            target,
            shadows,
            masks,
            x,
            y,
            online=online,
            global_variance=global_variance,
            batch_size=batch_size,
        )

    return jax.lax.map(score, (target_snapshots, per_round)).sum(0)
