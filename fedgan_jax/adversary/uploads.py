"""Malicious uploads: what the adversary sends in its slot of a round (`adversary.upload`).

* ``honest``: it trains like every participant; the round has no adversary function.
* ``gradient_ascent`` (Nasr, Shokri & Houmansadr, S&P 2019, the active attacker): in each
  round of ``adversary.ascent_rounds`` it uploads its honest update plus a step *up* the
  gradient of the mean loss on the target records. The step moves the *global* model by
  ``ascent_gamma`` times the norm of the last global update it saw (M_{t-1} - M_{t-2}):
  FedAvg divides its upload by about the number of participants N (it knows N from the
  declared label sets), so its own step is N times that. The targets are candidates it is
  asked about, chosen without membership knowledge: every candidate of the victim's
  declared classes (``ascent_targets=victim_classes``) or every candidate (``pool``). In
  the next round the victim's local training pulls its own records back down, more than
  the non-members of its classes; the adversary watches the targets' losses
  (`membership.loss_drop`).
* ``fake_class`` (Hitaj, Ateniese & Perez-Cruz, CCS 2017, the active GAN): once its
  generator runs, its local training also fits ``fake_per_class`` generated samples of
  each of the victim's declared classes labelled with its own first class, so the victim's
  updates must carry finer detail of its classes to tell them apart.

Each builder returns an `Upload`, ``(inputs, global_params, x, y, count, lr) -> (params,
metrics)``, which `federated_averaging(adversary=i, upload=...)` calls in participant i's slot with
its own records and the inputs it passes (the driver builds them in
`driver.adversary.upload_inputs` from the adversary's own state, keys and candidates, never
another participant's data).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from fedgan_jax.adversary.attack import record_losses
from fedgan_jax.core import checks
from fedgan_jax.core.types import ApplyFn, PRNGKey
from fedgan_jax.federation import fedavg
from fedgan_jax.federation.server import Upload

UPLOADS = ("honest", "gradient_ascent", "fake_class")
ASCENT_TARGETS = ("victim_classes", "pool")


@struct.dataclass
class AscentInputs:
    key: jax.Array  # its own upload key of this round
    targets_x: jax.Array  # [n, ...] the candidate records
    targets_y: jax.Array  # [n]
    weight: jax.Array  # [n] 1 for an ascent target, 0 otherwise
    step: jax.Array  # [] the ascent step's length in its upload


@struct.dataclass
class FakeInputs:
    key: jax.Array  # its own upload key of this round
    generator: jax.Array  # its generator's params
    fake_classes: jax.Array  # [C] bool: classes to generate (the victim's declared ones)
    fake_label: jax.Array  # [] int: its own class the fakes are labelled with
    active: jax.Array  # [] bool: its generator has started


def gradient_ascent(
    apply_fn: ApplyFn,
    *,
    local_epochs: int = 1,
    batch_size: int = 64,
    local_steps: int = 0,
    chunk: int = 256,
) -> Upload:
    """Nasr et al.'s active upload: its honest update (E epochs of SGD on its own records,
    the clients' recipe) plus a step of length ``inputs.step`` up the gradient of the
    weighted mean loss of ``inputs.targets_*`` at the global params (`AscentInputs`,
    `ascent_inputs`). The targets' loss is summed in chunks of `chunk` records."""
    honest = fedavg.make_client_update(
        apply_fn, local_epochs=local_epochs, batch_size=batch_size, local_steps=local_steps
    )
    return _ascent_update(honest, apply_fn, chunk)


def ascent_inputs(
    key: PRNGKey,
    targets_x: jax.Array,
    targets_y: jax.Array,
    *,
    step: float | jax.Array,
    weight: jax.Array | None = None,
) -> AscentInputs:
    """The inputs of one `gradient_ascent` upload: every target weighted 1 unless
    `weight` says otherwise; `step` is the ascent step's L2 length in its own upload."""
    if weight is None:
        weight = jnp.ones(jnp.shape(targets_y), jnp.float32)
    return AscentInputs(
        key=key,
        targets_x=jnp.asarray(targets_x),
        targets_y=jnp.asarray(targets_y),
        weight=jnp.asarray(weight, jnp.float32),
        step=jnp.asarray(step, jnp.float32),
    )


def fake_class(
    apply_fn: ApplyFn,
    generate: Callable,
    *,
    per_class: int,
    local_epochs: int = 1,
    batch_size: int = 64,
    local_steps: int = 0,
) -> Upload:
    """Hitaj et al.'s active GAN upload: its local training also fits `per_class` images of
    each class of ``inputs.fake_classes`` (`FakeInputs`), drawn by
    ``generate(generator_params, key, per_class) -> [C, per_class, H, W, ch]`` (a
    `GanTrainer`'s ``images``) and labelled with its own class ``inputs.fake_label``."""
    honest = fedavg.make_client_update(
        apply_fn, local_epochs=local_epochs, batch_size=batch_size, local_steps=local_steps
    )
    return _fake_update(honest, generate, per_class)


def _ascent_update(honest, apply_fn, chunk: int) -> Callable:
    def target_loss(params, inputs: AscentInputs):
        def part(xw):
            x, y, w = xw
            return jnp.sum(w * record_losses(apply_fn(params, x), y))

        n = inputs.targets_y.shape[0]
        pad = -n % chunk
        xs = (inputs.targets_x, inputs.targets_y, inputs.weight)
        xs = jax.tree.map(
            lambda v: jnp.concatenate([v, jnp.zeros((pad, *v.shape[1:]), v.dtype)]), xs
        )
        xs = jax.tree.map(lambda v: v.reshape(-1, chunk, *v.shape[1:]), xs)
        return jax.lax.map(part, xs).sum() / jnp.maximum(inputs.weight.sum(), 1.0)

    def update(inputs: AscentInputs, global_params, x, y, count, learning_rate):
        new, metrics = honest(global_params, x, y, count, inputs.key, learning_rate)
        grad = jax.grad(target_loss)(global_params, inputs)
        scale = inputs.step / jnp.maximum(optax.tree.norm(grad), 1e-12)
        return jax.tree.map(lambda p, g: p + scale * g, new, grad), metrics

    return update


def _fake_update(honest, generate, per_class: int) -> Callable:
    def update(inputs: FakeInputs, global_params, x, y, count, learning_rate):
        fakes = generate(inputs.generator, inputs.key, per_class)  # [C, n, ...]
        num_classes = fakes.shape[0]
        fake_valid = jnp.repeat(inputs.fake_classes & inputs.active, per_class)
        all_x = jnp.concatenate([x, fakes.reshape(-1, *x.shape[1:])])
        all_y = jnp.concatenate(
            [y, jnp.full((num_classes * per_class,), inputs.fake_label, y.dtype)]
        )
        valid = jnp.concatenate([jnp.arange(x.shape[0]) < count, fake_valid])
        order = jnp.argsort(~valid, stable=True)  # the valid records first, as trainers expect
        train_key = jax.random.fold_in(inputs.key, 1)
        return honest(
            global_params, all_x[order], all_y[order], valid.sum(), train_key, learning_rate
        )

    return update


def check_config(a, rounds: int, attacks: tuple[str, ...]) -> None:
    """The upload fields of ``config.adversary`` (called by `adversary_plan.check_config`)."""
    upload = checks.choice("adversary.upload", a.upload, UPLOADS)
    checks.choice("adversary.ascent_targets", a.ascent_targets, ASCENT_TARGETS)
    checks.number("adversary.ascent_gamma", a.ascent_gamma, 0.0)
    checks.integer("adversary.fake_per_class", a.fake_per_class, 1)
    ascent = tuple(a.ascent_rounds)
    for r in ascent:
        checks.integer("adversary.ascent_rounds", r, 1, rounds - 1)
    gaps = [b - a_ for a_, b in zip(ascent[:-1], ascent[1:], strict=True)]
    if any(g < 2 for g in gaps):
        checks.fail(
            "adversary.ascent_rounds", ascent, "must increase by at least 2 (a round to watch)"
        )
    if not ascent and (upload == "gradient_ascent" or "gradient_ascent" in attacks):
        checks.fail("adversary.ascent_rounds", ascent, "gradient_ascent needs at least one round")
    if upload == "fake_class" and "gan" not in attacks:
        checks.fail("adversary.upload", upload, "fake_class needs the gan attack (its generator)")
