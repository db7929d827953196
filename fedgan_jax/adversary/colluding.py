"""Attacks of a server that sees every upload, and of participants colluding with it.

The paper (Sec. VI) names a "conspiracy" of the server with a participant as the way past
the averaging that blinds a lone participant. A server sees what a participant never does:
each selected client's update ``u_k = W_k - M_t`` of every round. A participant colluding
with it sees the same (the server's view) plus its own records; several colluders pool
theirs (`pool_records`). The round hands the view out when it is built with
``federated_averaging(..., server_view="uploads")`` (`server_view` reads it back):

    fed = fj.federated_averaging(apply_fn, num_clients=5, server_view="uploads")
    server0 = server
    server, metrics = jax.jit(fed.round)(server, clients, key)
    view = fj.server_view(server0.params, metrics)            # M_t and the round's uploads
    post = fj.source_posterior(apply_fn, view, x, y)          # [n, m] log-posteriors
    mia = fj.fedmia_scores(apply_fn, view, x, y, target=2)    # [n] -log p-values

* **Source inference** (Hu et al., "Source Inference Attacks in Federated Learning",
  ICDM 2021): each client's local model ``W_k = M_t + u_k`` gives the record a loss; by
  Bayes with the loss as the negative log-likelihood, the posterior over the round's
  clients is ``P(k | x) ∝ prior_k exp(-loss_k(x) / T)`` (their Eq.; T = 1), and the record
  is attributed to its argmax. Rounds combine by *summing* the per-round log-posteriors
  (independent evidence; renormalise with ``log_softmax`` if a distribution is wanted).
* **FedMIA** (Zhu et al., "FedMIA: An Effective Membership Inference Attack Exploiting
  'All for One' Principle in Federated Learning", CVPR 2025): the clients' data are
  disjoint, so every *non-target* client's update is a sample of what an update looks
  like when the record was not trained on. Per record and round: a statistic of every
  client's update, a Gaussian null fitted to the non-target clients' statistics (their
  mean and unbiased variance, per record, as the paper's code does), and the one-tailed
  test of the target client's statistic, scored ``-log P_null(S >= s_target)``. Rounds
  combine by summing these (Fisher's method: rounds as independent tests).
  Statistics (``statistic``): ``cosine`` (the paper's choice): the cosine between the
  record's descent direction ``-grad loss(M_t; x)`` and ``u_k``; ``loss``: the logit
  confidence ``log p_y - log(1 - p_y)`` of the record under ``W_k`` (LiRA's statistic).
  Under the per-record null the record's gradient norm scales every client's cosine
  alike and cancels from the z-score, so the cosine is computed as ``<-g, u_k> / |u_k|``
  (one forward-mode pass per client); where it would not cancel (``null="candidates"``,
  secure aggregation) the gradient norm is computed too.

**Secure aggregation** (``server_view="secure_aggregation"``) leaves the server only
``sum_k w_k u_k``. The per-client step of both attacks is then removed, and each falls
back to what the aggregate allows, with ``per_client=False`` in its result:
source inference returns the prior (no evidence about the source at all); FedMIA has no
null from the non-target clients and no target update, so it scores the record's
statistic under the aggregate update (the new global model), standardised over the
candidates of the record's class: a test of membership in the federation, not in the
target client. ``per_client_uploads`` (and ``fallback=False``) raise instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax import lax

from fedgan_jax.adversary import membership
from fedgan_jax.adversary.attack import record_losses
from fedgan_jax.core import checks
from fedgan_jax.core.errors import ConfigError
from fedgan_jax.core.types import ApplyFn, Params
from fedgan_jax.data.partition import ClientData
from fedgan_jax.nn.training import batched_apply

STATISTICS = ("cosine", "loss")
NULLS = ("clients", "candidates")


class ServerView(NamedTuple):
    """What the server sees of one round: the global model M_t the round started from,
    the selected clients' indices ``[m]``, and either their updates ``uploads`` (a pytree
    stacked ``[m, ...]``) or, under secure aggregation, only ``upload_sum`` =
    ``sum_k w_k u_k`` and ``weight_sum``. The absent fields are None."""

    global_params: Params
    clients: jax.Array
    uploads: Params | None = None
    upload_sum: Params | None = None
    weight_sum: jax.Array | None = None

    @property
    def per_client(self) -> bool:
        """Whether each client's upload is visible (False under secure aggregation)."""
        return self.uploads is not None


@struct.dataclass
class Inference:
    """An attack's scores and whether they used each client's upload (``per_client``
    False: secure aggregation removed that step, and the scores are the documented
    fallback computed from the sum)."""

    scores: jax.Array
    per_client: bool = struct.field(pytree_node=False)


def server_view(global_params: Params, metrics: dict) -> ServerView:
    """The `ServerView` of a round from the params it started from (M_t) and the metrics
    of a round built with ``server_view="uploads"`` or ``"secure_aggregation"``."""
    clients = metrics["client"]
    if "uploads" in metrics:
        return ServerView(global_params, clients, uploads=metrics["uploads"])
    if "upload_sum" in metrics:
        return ServerView(
            global_params,
            clients,
            upload_sum=metrics["upload_sum"],
            weight_sum=metrics["weight_sum"],
        )
    raise ConfigError(
        "the round's metrics hold nothing the server sees: build the federation with "
        "server_view='uploads' or 'secure_aggregation'"
    )


def per_client_uploads(view: ServerView) -> Params:
    """The stacked per-client uploads ``[m, ...]``; `ConfigError` under secure
    aggregation, where the server (and whoever colludes with it) sees only their sum."""
    if not view.per_client:
        raise ConfigError(
            "secure aggregation: the server sees only the sum of the uploads, not each "
            "client's (build the round with server_view='uploads' to simulate without it)"
        )
    return view.uploads


def source_posterior(
    apply_fn: ApplyFn,
    view: ServerView,
    x: jax.Array,
    y: jax.Array,
    *,
    prior: jax.Array | None = None,
    temperature: float = 1.0,
    batch_size: int = 256,
) -> Inference:
    """Hu et al.'s source inference: log-posteriors ``[n, m]`` over the round's clients
    (columns in ``view.clients``' order), ``log_softmax(log prior - loss_k / T)``.
    ``prior`` ``[m]``: over the round's clients (None: uniform). Under secure aggregation
    the scores are the log-prior for every record (``per_client=False``)."""
    m = view.clients.shape[0]
    log_prior = jnp.full((m,), -jnp.log(m)) if prior is None else jnp.log(jnp.asarray(prior))
    x, y = jnp.asarray(x), jnp.asarray(y)
    if not view.per_client:
        return Inference(jnp.broadcast_to(log_prior, (x.shape[0], m)), per_client=False)
    losses = client_losses(apply_fn, view.global_params, view.uploads, x, y, batch_size)
    return Inference(jax.nn.log_softmax(log_prior - losses.T / temperature, -1), True)


def client_losses(
    apply_fn: ApplyFn,
    global_params: Params,
    uploads: Params,
    x: jax.Array,
    y: jax.Array,
    batch_size: int = 256,
) -> jax.Array:
    """The cross-entropy of every record under every local model ``M_t + u_k`` ``[m, n]``."""
    return _per_client(apply_fn, global_params, uploads, x, y, batch_size, record_losses)


def _per_client(apply_fn, global_params, uploads, x, y, batch_size, of_logits):
    def one(u):
        local = jax.tree.map(lambda g, d: g + d.astype(g.dtype), global_params, u)
        return of_logits(batched_apply(apply_fn, local, x, batch_size), y)

    return lax.map(one, uploads)


def update_cosines(
    apply_fn: ApplyFn,
    global_params: Params,
    uploads: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    exact: bool = True,
    batch_size: int = 256,
) -> jax.Array:
    """``cos(-grad loss(M_t; x_i), u_k)`` for every upload and record ``[m, n]``: the
    directional derivative of the record's loss along u_k (a jvp per client) over
    ``|u_k|``, and over the record's gradient norm when ``exact`` (False leaves out that
    per-record factor, which a per-record standardisation cancels)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    n, shape = x.shape[0], x.shape[1:]
    chunks = -(-n // batch_size)
    xs = jnp.pad(x, [(0, chunks * batch_size - n)] + [(0, 0)] * len(shape))
    ys = jnp.pad(y, (0, chunks * batch_size - n))
    norms = jax.vmap(optax.tree.norm)(uploads)

    def batch(xy):
        xb, yb = xy

        def losses(p):
            return record_losses(apply_fn(p, xb), yb)

        def along(u):
            return -jax.jvp(losses, (global_params,), (u,))[1]

        slopes = lax.map(along, uploads)  # [m, batch]
        if not exact:
            return slopes

        def grad_norm(xi, yi):
            g = jax.grad(lambda p: record_losses(apply_fn(p, xi[None]), yi[None])[0])
            return optax.tree.norm(g(global_params))

        return slopes / (jax.vmap(grad_norm)(xb, yb) + 1e-12)

    out = lax.map(batch, (xs.reshape(chunks, batch_size, *shape), ys.reshape(chunks, -1)))
    out = jnp.moveaxis(out, 1, 0).reshape(norms.shape[0], -1)[:, :n]
    return out / (norms[:, None] + 1e-12)


def fedmia_scores(
    apply_fn: ApplyFn,
    view: ServerView,
    x: jax.Array,
    y: jax.Array,
    target: int,
    *,
    statistic: str = "cosine",
    null: str = "clients",
    fallback: bool = True,
    batch_size: int = 256,
) -> Inference:
    """Zhu et al.'s FedMIA test of one round for client ``target`` (its index among all
    participants) ``[n]``: ``-log P_null(S >= s_target)``, larger = more likely the
    target's record; sum it over rounds (module doc). A round that did not select the
    target scores 0 (no evidence). ``null="candidates"``: the target's statistic
    standardised over the candidates of the record's class instead of against the
    non-target clients (the target-only test that FedMIA improves on). Under secure
    aggregation: the module doc's fallback (``per_client=False``), or `ConfigError` when
    ``fallback`` is False."""
    checks.choice("statistic", statistic, STATISTICS, ConfigError)
    checks.choice("null", null, NULLS, ConfigError)
    x, y = jnp.asarray(x), jnp.asarray(y)
    if not view.per_client:
        if not fallback:
            per_client_uploads(view)  # raises: no per-client uploads to test
        mean = jax.tree.map(lambda s: s[None] / view.weight_sum, view.upload_sum)
        stats = _statistics(apply_fn, view.global_params, mean, x, y, statistic, True, batch_size)
        classes = _num_classes(apply_fn, view.global_params, x)
        return Inference(_per_class_tail(stats[0], y, classes), per_client=False)
    exact = null == "candidates"
    stats = _statistics(
        apply_fn, view.global_params, view.uploads, x, y, statistic, exact, batch_size
    )
    is_target = view.clients == target
    if null == "candidates":
        classes = _num_classes(apply_fn, view.global_params, x)
        score = _per_class_tail(stats[jnp.argmax(is_target)], y, classes)
    else:
        score = client_null_tail(stats, is_target)
    return Inference(jnp.where(is_target.any(), score, 0.0), per_client=True)


def _statistics(apply_fn, global_params, uploads, x, y, statistic, exact, batch_size):
    if statistic == "loss":
        return _per_client(
            apply_fn, global_params, uploads, x, y, batch_size, membership.logit_confidence
        )
    return update_cosines(
        apply_fn, global_params, uploads, x, y, exact=exact, batch_size=batch_size
    )


def client_null_tail(stats: jax.Array, is_target: jax.Array) -> jax.Array:
    """FedMIA's one-tailed test ``[n]`` from every client's statistic ``[m, n]``: a Gaussian
    fitted per record to the non-target rows (mean, unbiased variance), scored at the
    target row as ``-log P(S >= s_target)`` (`jax.scipy.stats.norm.logsf`)."""
    others = (~is_target).astype(stats.dtype)[:, None]
    k = jnp.maximum(others.sum(), 2.0)
    mean = (others * stats).sum(0) / k
    var = (others * (stats - mean) ** 2).sum(0) / (k - 1)
    z = (stats[jnp.argmax(is_target)] - mean) / jnp.sqrt(var + 1e-12)
    return -jax.scipy.stats.norm.logsf(z)


def _num_classes(apply_fn, params, x) -> int:
    return jax.eval_shape(apply_fn, params, x[:1]).shape[-1]


def _per_class_tail(values, y, num_classes):
    z = membership.standardise_per_class(values, y, num_classes)
    return -jax.scipy.stats.norm.logsf(z)


def pool_records(
    clients: ClientData, colluders: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The colluding participants' own records, pooled: ``(x, y, owner)`` with every
    colluder's real (unpadded) records in turn. Besides the server's view, this is all a
    coalition adds: records whose source it knows, none of them another client's."""
    if len(set(colluders)) != len(colluders) or not colluders:
        raise ConfigError(f"colluders={list(colluders)}: need distinct participant indices")
    counts = np.asarray(clients.counts)
    for c in colluders:
        if not 0 <= c < counts.shape[0]:
            raise ConfigError(f"colluder {c}: must lie in [0, {counts.shape[0] - 1}]")
    xs = [np.asarray(clients.x[c, : counts[c]]) for c in colluders]
    ys = [np.asarray(clients.y[c, : counts[c]]) for c in colluders]
    owner = np.concatenate([np.full(counts[c], c) for c in colluders])
    return np.concatenate(xs), np.concatenate(ys), owner


def threshold_at_fpr(reference_scores: jax.Array, fpr: float) -> float:
    """The score above which at most a fraction `fpr` of `reference_scores` lie: with the
    coalition's own records (known non-members of the target), a decision threshold
    chosen without any record of the target's."""
    return float(np.quantile(np.asarray(reference_scores), 1.0 - fpr, method="higher"))
