"""Type aliases shared by the modules."""

from collections.abc import Callable
from typing import Any

import jax

Params = Any  # a pytree of arrays (flax 'params' collection)
PRNGKey = jax.Array  # a typed key from jax.random.key
ApplyFn = Callable[[Params, jax.Array], jax.Array]  # (params, images) -> logits
Config = Any  # an ml_collections.ConfigDict of configs/default.py's shape
