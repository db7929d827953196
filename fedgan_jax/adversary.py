"""What the adversary knows (paper Sec. III-D), and nothing else.

The adversary A is one participant. It can keep every global model it receives, it
controls its own data and training, and it knows every participant's declared label set
(Sec. III-C). It cannot see another participant's records or updates: the server only
broadcasts the average.

`AdversaryView` is exactly that knowledge minus the global models (which the attack
functions take as a separate argument), and `adversary_view` is the one place that cuts it
out of the federation's data. Every function of the attack (`gan`, `attack`) takes an
`AdversaryView` and global params, never `ClientData`, so the threat model is visible in
the signatures; `tests/test_threat_model.py` replaces the victim's records after the
federation and checks that nothing the adversary computes changes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from fedgan_jax.partition import ClientData


@struct.dataclass
class AdversaryView:
    """The adversary's own records (padded like a client) and every declared label set."""

    own_x: jax.Array  # [capacity, H, W, C]
    own_y: jax.Array  # [capacity]
    own_count: jax.Array  # []
    declared: jax.Array  # [N, num_classes] bool: participant i declared label c
    victim: jax.Array  # [] int: the participant under attack
    adversary: jax.Array  # [] int: the adversary itself

    @property
    def victim_labels(self) -> jax.Array:
        """[num_classes] bool: the victim's declared labels (the IN rule of Sec. IV-C)."""
        return self.declared[self.victim]

    @property
    def declared_classes(self) -> jax.Array:
        """[num_classes] bool: labels some participant declared (the classes to rebuild)."""
        return self.declared.any(axis=0)


def adversary_view(
    clients: ClientData, declared: jax.Array, *, adversary: int, victim: int
) -> AdversaryView:
    """Cuts the adversary's knowledge out of the federation (works with a leading run axis)."""
    lead = clients.counts.shape[:-1]  # () for one run, (R,) for a batch of runs
    return AdversaryView(
        own_x=clients.x[..., adversary, :, :, :, :],
        own_y=clients.y[..., adversary, :],
        own_count=clients.counts[..., adversary],
        declared=jnp.asarray(declared, bool),
        victim=jnp.full(lead, victim, jnp.int32),
        adversary=jnp.full(lead, adversary, jnp.int32),
    )
