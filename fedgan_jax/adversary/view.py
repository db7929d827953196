"""What the adversary knows besides the global models: its own records and the declared
label sets (paper Sec. III-C/D). `adversary_view` is the one place that cuts it out of the
federation's data; every adversary function takes it, never `ClientData`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from fedgan_jax.core.errors import ConfigError
from fedgan_jax.data.partition import ClientData


@struct.dataclass
class AdversaryView:
    """The adversary's own records (padded like a client) and every declared label set.

    Host-side arrays carry the run axis (``own_x`` [R, capacity, ...]); inside a function
    mapped over runs they do not. The properties work for both.
    """

    own_x: jax.Array  # [capacity, H, W, C]
    own_y: jax.Array  # [capacity]
    own_count: jax.Array  # []
    declared: jax.Array  # [N, num_classes] bool: participant i declared label c
    victim: jax.Array  # [] int: the participant under attack
    adversary: jax.Array  # [] int: the adversary itself
    # A colluding adversary (driver/collusion.py): the coalition's own records, the
    # adversary's among them, ``[c, capacity, ...]``; None when it does not collude.
    coalition: ClientData | None = None

    @property
    def victim_labels(self) -> jax.Array:
        """[num_classes] bool: the victim's declared labels (the IN rule of Sec. IV-C)."""
        row = jnp.expand_dims(self.victim, (-1, -2))
        return jnp.take_along_axis(self.declared, row, axis=-2)[..., 0, :]

    @property
    def declared_classes(self) -> jax.Array:
        """[num_classes] bool: labels some participant declared (the classes to rebuild)."""
        return self.declared.any(axis=-2)


def adversary_view(
    clients: ClientData,
    declared: jax.Array,
    *,
    adversary: int,
    victim: int,
    knows_declarations: bool = True,
    colluders: tuple[int, ...] = (),
) -> AdversaryView:
    """Cuts the adversary's knowledge out of the federation's ``[R, N, ...]`` arrays.

    Hidden declarations (`knows_declarations` False): it knows its own classes (those of
    its records) and nothing of the others', so their rows hold every class (the
    generator rebuilds all of them); the victim's row is replaced by the set it recovers
    (`label_recovery`) before the attacks. `colluders` (the adversary among them): the
    participants whose own records it pools (``coalition``; empty: none).
    """
    runs = clients.counts.shape[0]
    if not knows_declarations:
        declared = hidden_declarations(clients, np.asarray(declared).shape, adversary)
    return AdversaryView(
        own_x=clients.x[:, adversary],
        own_y=clients.y[:, adversary],
        own_count=clients.counts[:, adversary],
        declared=jnp.asarray(declared, bool),
        victim=jnp.full((runs,), victim, jnp.int32),
        adversary=jnp.full((runs,), adversary, jnp.int32),
        coalition=_coalition(clients, colluders),
    )


def _coalition(clients: ClientData, colluders: tuple[int, ...]) -> ClientData | None:
    if not colluders:
        return None
    idx = jnp.asarray(colluders)
    return ClientData(x=clients.x[:, idx], y=clients.y[:, idx], counts=clients.counts[:, idx])


def view_of(
    clients: ClientData, declared: np.ndarray, *, adversary: int, victim: int
) -> AdversaryView:
    """One run's view (no run axis): participant `adversary`'s records of ``clients``
    (``[N, capacity, ...]``, e.g. from `fedgan_jax.data.partition.clients_from_arrays`) and
    the declared label sets ``declared[N, C]``."""
    n = clients.counts.shape[0]
    for name, i in (("adversary", adversary), ("victim", victim)):
        if not 0 <= i < n:
            raise ConfigError(f"{name}={i}: the clients hold participants 0..{n - 1}")
    if adversary == victim:
        raise ConfigError(f"victim={victim} equals adversary: they must differ")
    return AdversaryView(
        own_x=jnp.asarray(clients.x[adversary]),
        own_y=jnp.asarray(clients.y[adversary]),
        own_count=jnp.asarray(clients.counts[adversary]),
        declared=jnp.asarray(declared, bool),
        victim=jnp.int32(victim),
        adversary=jnp.int32(adversary),
    )


def hidden_declarations(clients: ClientData, shape, adversary: int) -> np.ndarray:
    """``[R, N, C]``: the adversary's own classes in its row, every class in the others'."""
    declared = np.ones(shape, bool)
    y, counts = np.asarray(clients.y[:, adversary]), np.asarray(clients.counts[:, adversary])
    for r in range(shape[0]):
        declared[r, adversary] = np.isin(np.arange(shape[-1]), y[r, : counts[r]])
    return declared
