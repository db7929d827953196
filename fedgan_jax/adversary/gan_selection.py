"""Which generator D_gen is drawn from: the own-class MMD (``gan.select``, `gan_config`).

`own_class_mmd` scores a generator by what the adversary can measure without labels: how
far its samples of the adversary's *own* classes (`gan_sampling.images`) lie from its own
records of them (`mmd2`), in pixel space or in the global model's feature space
(`gan_objective.frozen_f`). `gan.make_gan_trainer` binds it as ``GanTrainer.own_mmd``; the
driver checks it every ``gan.select_every`` rounds and keeps the generator that scores
lowest, a label-free guard against collapse at long budgets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedgan_jax.adversary.gan_objective import TrainerSpec, frozen_f
from fedgan_jax.adversary.gan_sampling import images
from fedgan_jax.adversary.view import AdversaryView


def mmd2(x: jax.Array, y: jax.Array) -> jax.Array:
    """Biased squared MMD between sample sets ``x [n, d]`` and ``y [m, d]`` (Gretton et
    al. 2012), a sum of Gaussian kernels at 0.5, 1 and 2 times the median squared distance
    within `y`: 0 for the same sets, larger as the distributions part (in mean or spread)."""

    def sq(a, b):
        return jnp.maximum(
            jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None] - 2.0 * a @ b.T, 0.0
        )

    dyy = sq(y, y)
    scale = jnp.median(dyy) + 1e-8

    def k(d):
        return sum(jnp.exp(-d / (s * scale)) for s in (0.5, 1.0, 2.0)).mean()

    return k(sq(x, x)) + k(dyy) - 2.0 * k(sq(x, y))


SELECT_SAMPLES = 64  # per class, generated and real, for own_class_mmd


def own_class_mmd(spec: TrainerSpec, gen_params, view: AdversaryView, key, global_params=None):
    """How far G's samples of the adversary's *own* classes lie from its own records of
    them: `mmd2` per own class (64 of each, drawn from `key`), averaged. In pixel space, or
    with `global_params` in the feature space of the global model f (its penultimate layer,
    the kind of embedding FID and KID measure in), where distances follow what f uses.

    A label-free check for the classes it cannot see: G is one class-conditional network,
    and collapse or drift shows on the classes where the adversary holds real records.
    """
    n, c = SELECT_SAMPLES, spec.num_classes
    gk, rk = jax.random.split(key)
    fake = images(spec, gen_params, gk, n)
    capacity = view.own_y.shape[0]
    real_row = jnp.arange(capacity) < view.own_count

    def real(cls, k):
        mask = (view.own_y == cls) & real_row
        idx = jax.random.choice(k, capacity, (n,), p=mask / jnp.maximum(mask.sum(), 1))
        return view.own_x[idx], mask.any()

    real_x, held = jax.vmap(real)(jnp.arange(c), jax.random.split(rk, c))

    def embed(x):  # [c, n, H, W, ch] -> [c, n, d]
        if global_params is not None:
            x = frozen_f(
                spec, global_params, x.reshape(c * n, *spec.image_shape), with_features=True
            )[1]
        return x.reshape(c, n, -1)

    own = jnp.take(view.declared, view.adversary, axis=-2) & held
    per_class = jnp.where(own, jax.vmap(mmd2)(embed(fake), embed(real_x)), 0.0)
    return jnp.sum(per_class) / jnp.maximum(own.sum(), 1)
