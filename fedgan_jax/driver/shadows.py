"""LiRA in a run: the adversary's shadow federations after the last round (`adversary.lira`).

What it uses is what a participant has: the federation's hyper-parameters (the protocol
it takes part in, read from ``config.fl``), its own records and the declared label sets
(its `AdversaryView`), the latest global model it kept, its own key stream (``lira``) and
the candidate pool it is asked about (labels, not membership).

The shadows mirror the real federation: the candidates of the victim's declared classes
are its IN/OUT candidates (`lira.shadow_masks`: each IN in half of the S shadows, then in
the victim's slot); a candidate of another class is never IN, and sits, as every shadow's
OUT candidate, with a participant that declared its class (`lira.shadow_clients`), so the
other participants hold their own classes as in the real federation. Every shadow trains
`fl.rounds` rounds of the real federation's `federated_averaging` from a fresh init
(`lira.train_shadows`: one program over the shadow axis). Only the candidates of the
victim's classes get a likelihood ratio; the others score 0 (no evidence), and the
user-level score adds the label term (`membership.user_level`) as for every membership
attack. ``lira`` is the online test (IN and OUT Gaussians), ``lira_offline`` the one-sided
test against OUT alone (`lira.lira_scores`).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from fedgan_jax.adversary import lira
from fedgan_jax.adversary.view import AdversaryView
from fedgan_jax.core.types import Config
from fedgan_jax.driver.engine import apply_fn_of, federation_of
from fedgan_jax.driver.state import AdversaryKeys
from fedgan_jax.nn import models

LIRA_ATTACKS = ("lira", "lira_offline")


def lira_z(
    config: Config,
    classifier,
    image_shape: tuple[int, ...],
    latest,
    *,
    view: AdversaryView,
    keys: AdversaryKeys,
    pool_x: jax.Array,
    pool_y: jax.Array,
) -> dict[str, np.ndarray]:
    """``{attack: [R, n]}`` for each configured LiRA attack: the likelihood ratio of every
    candidate of the victim's classes under the run's latest global model (`latest`, run
    axis first), 0 for the others."""
    wanted = [a for a in LIRA_ATTACKS if a in config.attack.attacks]
    if not wanted:
        return {}
    fed = federation_of(config, classifier, server_view="none")  # shadows hand out nothing
    apply_fn = apply_fn_of(classifier)

    def init(key):
        return models.init_params(classifier, key, jnp.zeros((1, *image_shape)))

    runs = int(np.asarray(view.victim).shape[0])
    out = {a: np.zeros((runs, pool_y.shape[0]), np.float32) for a in wanted}
    for r in range(runs):
        tic = time.perf_counter()
        logging.info(
            "LiRA: %d shadow federations of %d rounds (run %d of %d), one program; "
            "about %d federations' time",
            config.attack.lira_shadows, config.fl.rounds, r + 1, runs, config.attack.lira_shadows,
        )  # fmt: skip
        one = jax.tree.map(lambda a, r=r: a[r], view)
        params = jax.tree.map(lambda a, r=r: a[r], latest)
        scores = _one_run(config, fed, init, apply_fn, params, one, keys.lira[r], pool_x, pool_y)
        for a in wanted:
            out[a][r] = scores[a]
        logging.info("LiRA: run %d of %d scored in %.0f s", r + 1, runs, time.perf_counter() - tic)
    return out


def _one_run(config, fed, init, apply_fn, params, view, key, pool_x, pool_y):
    """The configured LiRA scores ``[n]`` of one run (module doc)."""
    a = config.attack
    mask_key, train_key = jax.random.split(key)
    candidate = np.asarray(view.victim_labels)[np.asarray(pool_y)]  # the victim's classes
    masks = np.asarray(lira.shadow_masks(mask_key, len(candidate), a.lira_shadows))
    masks = masks & candidate[None]  # another class is never IN: it stays with its declarers
    clients = lira.shadow_clients(view, masks, np.asarray(pool_x), np.asarray(pool_y))
    shadows = lira.train_shadows(
        fed, init, clients, train_key, rounds=config.fl.rounds, run_axis=a.lira_run_axis
    )
    idx = np.flatnonzero(candidate)
    x, y = jnp.asarray(pool_x)[idx], jnp.asarray(pool_y)[idx]
    bs = config.eval.batch_size
    scores = {}
    for name, online in (("lira", True), ("lira_offline", False)):
        if name in a.attacks:
            z = np.zeros(len(candidate), np.float32)
            z[idx] = np.asarray(
                lira.lira_scores(
                    apply_fn, params, shadows.params, masks[:, idx], x, y,
                    online=online, global_variance=a.lira_variance == "global",
                    batch_size=bs,
                )
            )  # fmt: skip
            scores[name] = z
    return scores
