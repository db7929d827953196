"""Declared, disjoint label sets and the padded per-client arrays (paper Sec. III-C).

Before training every participant declares the labels it holds; label sets do not
overlap. The victim holds exactly ``k`` labels; the other labels are dealt round-robin to
the remaining participants, the adversary included. Which labels go where is seeded.

Each participant then holds every training record of its declared labels. Clients are
stacked into fixed-shape arrays ``[N, capacity, ...]`` with a count per client (valid
records first, zero padding after), so one compiled round serves every client and every
label deal of a sweep.

`Roles.validate` holds the role rules (at least `MIN_PARTICIPANTS`, distinct adversary and
victim, every other participant left a label); `check_config` applies them to
``config.fl`` and a sweep's label counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
from flax import struct

from fedgan_jax import checks
from fedgan_jax.errors import ConfigError

# The adversary, the victim, and at least one benign participant whose records are the
# protocols' non-members (`protocols.target_sets`).
MIN_PARTICIPANTS = 3


@dataclasses.dataclass(frozen=True)
class Roles:
    """Who is who in the federation (participant indices are 0..N-1)."""

    num_participants: int
    adversary: int
    victim: int
    victim_num_labels: int

    def validate(self, num_classes: int) -> None:
        """The role rules (`ConfigError` naming the ``fl.*`` field); the only place they live."""
        n, a, v, k = self.num_participants, self.adversary, self.victim, self.victim_num_labels
        n = checks.integer("fl.num_participants", n, MIN_PARTICIPANTS)
        checks.integer("fl.adversary", a, 0, n - 1)
        checks.integer("fl.victim", v, 0, n - 1)
        if a == v:
            raise ConfigError(f"fl.victim={v} equals fl.adversary: they must differ")
        checks.integer("fl.victim_num_labels", k, 1, num_classes - 1)
        if num_classes - k < n - 1:
            raise ConfigError(
                f"fl.victim_num_labels={k} with fl.num_participants={n}: the other {n - 1} "
                f"participants would share {num_classes - k} labels, so one would hold none; "
                f"use victim_num_labels <= {num_classes - n + 1} or fewer participants"
            )


def check_config(fl, num_classes: int, label_counts: Iterable[int] = ()) -> None:
    """Checks the roles of ``config.fl`` for its k and for every k of `label_counts`
    (a sweep's victim label counts)."""
    for k in (fl.victim_num_labels, *label_counts):
        Roles(fl.num_participants, fl.adversary, fl.victim, k).validate(num_classes)


def deal_labels(num_classes: int, roles: Roles, seed: int) -> np.ndarray:
    """Returns ``declared[N, num_classes]`` (bool): participant i declares label c."""
    roles.validate(num_classes)
    order = np.random.default_rng(seed).permutation(num_classes)
    declared = np.zeros((roles.num_participants, num_classes), bool)
    k = roles.victim_num_labels
    declared[roles.victim, order[:k]] = True
    others = [i for i in range(roles.num_participants) if i != roles.victim]
    for j, label in enumerate(order[k:]):
        declared[others[j % len(others)], label] = True
    return declared


@struct.dataclass
class ClientData:
    """Padded client arrays: ``x[N, capacity, H, W, C]``, ``y[N, capacity]``, ``counts[N]``.

    Client i's records are ``x[i, :counts[i]]``; the rest is zero padding.
    """

    x: np.ndarray
    y: np.ndarray
    counts: np.ndarray

    @property
    def num_clients(self) -> int:
        return self.x.shape[0]

    @property
    def capacity(self) -> int:
        return self.x.shape[1]


def owners(train_y: np.ndarray, declared: np.ndarray) -> np.ndarray:
    """``owner[i]``: the participant holding training record i (labels are disjoint)."""
    label_owner = np.full(declared.shape[1], -1, np.int64)
    for participant, row in enumerate(declared):
        label_owner[row] = participant
    return label_owner[train_y]


def partition(
    train_x: np.ndarray,
    train_y: np.ndarray,
    declared: np.ndarray,
    *,
    capacity: int | None = None,
    multiple_of: int = 1,
) -> tuple[ClientData, np.ndarray]:
    """Gives every participant the training records of its declared labels.

    Returns the padded `ClientData` (numpy) and ``owner`` (see `owners`). The capacity
    is the largest client's record count rounded up to `multiple_of` (one local batch),
    or `capacity` if given (a sweep passes its largest, so shapes never change).
    """
    owner = owners(train_y, declared)
    n = declared.shape[0]
    counts = np.bincount(owner[owner >= 0], minlength=n).astype(np.int32)
    needed = int(-(-counts.max() // multiple_of) * multiple_of)
    if capacity is None:
        capacity = needed
    elif capacity < counts.max():
        raise ConfigError(f"client capacity {capacity} < largest client ({counts.max()} records)")
    x = np.zeros((n, capacity, *train_x.shape[1:]), np.float32)
    y = np.zeros((n, capacity), np.int32)
    for p in range(n):
        idx = np.flatnonzero(owner == p)
        x[p, : len(idx)] = train_x[idx]
        y[p, : len(idx)] = train_y[idx]
    return ClientData(x=x, y=y, counts=counts), owner
