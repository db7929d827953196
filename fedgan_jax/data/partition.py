"""Who holds which training records, and the padded per-client arrays (paper Sec. III-C).

Three schemes (``fl.partition``), all seeded; every training record goes to exactly one
participant, and a participant's declared labels are the classes it holds:

* ``disjoint`` (the paper): label sets do not overlap. The victim holds exactly ``k``
  labels; the other labels are dealt round-robin to the remaining participants, the
  adversary included. Each participant holds every training record of its labels.
* ``shared``: every class is held by ``fl.holders_per_class`` participants. The victim's
  ``k`` classes are the disjoint deal's (same seed), each shared with ``h - 1`` others;
  every other class goes to ``h`` participants other than the victim (round-robin), and a
  class's records are split evenly among its holders (seeded shuffle).
* ``dirichlet`` (Hsu, Qi & Brown 2019; Flower Datasets' ``DirichletPartitioner``, FedLab's
  ``hetero_dir_partition``): each class's records are split among all participants in
  proportions drawn from Dir(``fl.dirichlet_alpha``); the draw is repeated (at most
  `DIRICHLET_TRIES` times) until every participant holds a record. ``k`` plays no part.

Clients are
stacked into fixed-shape arrays ``[N, capacity, ...]`` with a count per client (valid
records first, zero padding after), so one compiled round serves every client and every
label deal of a sweep.

`Roles.validate` holds the role rules (at least `MIN_PARTICIPANTS`, distinct adversary and
victim, every other participant left a label); `check_config` applies them to
``config.fl`` and a sweep's label counts.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from flax import struct

from fedgan_jax.core import checks
from fedgan_jax.core.errors import ConfigError

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


SCHEMES = ("disjoint", "dirichlet", "shared")
DIRICHLET_TRIES = 100  # draws of the class proportions before giving up (module doc)


@dataclasses.dataclass(frozen=True)
class Scheme:
    """How records are split (module doc): ``fl.partition`` and its parameter."""

    name: str = "disjoint"
    alpha: float = 0.5  # dirichlet: concentration of Dir(alpha)
    holders: int = 2  # shared: participants holding each class

    @classmethod
    def from_config(cls, fl) -> Scheme:
        return cls(fl.partition, fl.dirichlet_alpha, fl.holders_per_class)

    def validate(self, num_participants: int) -> None:
        name = checks.choice("fl.partition", self.name, SCHEMES)
        if name == "dirichlet":
            checks.number("fl.dirichlet_alpha", self.alpha, 0.0, open_low=True)
        if name == "shared":
            checks.integer("fl.holders_per_class", self.holders, 1, num_participants - 1)


def check_config(fl, num_classes: int) -> None:
    """Checks the roles and the partition of ``config.fl`` (under dirichlet k plays no part)."""
    scheme = Scheme.from_config(fl)
    k = 1 if scheme.name == "dirichlet" else fl.victim_num_labels
    Roles(fl.num_participants, fl.adversary, fl.victim, k).validate(num_classes)
    scheme.validate(fl.num_participants)


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


def assign(
    train_y: np.ndarray, num_classes: int, roles: Roles, scheme: Scheme, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The run's partition: ``declared[N, C]`` (participant i holds a record of class c)
    and ``owner[n_train]`` (the participant holding each training record)."""
    scheme.validate(roles.num_participants)
    if scheme.name == "disjoint":
        declared = deal_labels(num_classes, roles, seed)
        return declared, owners(train_y, declared)
    if scheme.name == "shared":
        holders = deal_holders(num_classes, roles, scheme.holders, seed)
        owner = split_shared(train_y, holders, np.random.default_rng((seed, 1)))
    else:
        owner = split_dirichlet(train_y, num_classes, roles.num_participants, scheme.alpha, seed)
    declared = np.zeros((roles.num_participants, num_classes), bool)
    declared[owner, train_y] = True
    return declared, owner


def deal_holders(num_classes: int, roles: Roles, holders: int, seed: int) -> np.ndarray:
    """``holds[N, C]`` of the shared scheme: the victim's k classes are the disjoint deal's,
    each shared with ``holders - 1`` others; every other class goes to ``holders``
    non-victims. The others are taken round-robin, so they get classes evenly."""
    roles.validate(num_classes)
    order = np.random.default_rng(seed).permutation(num_classes)  # as `deal_labels`
    k = roles.victim_num_labels
    holds = np.zeros((roles.num_participants, num_classes), bool)
    others = [i for i in range(roles.num_participants) if i != roles.victim]
    turn = 0
    for j, label in enumerate(order):
        mine = j < k
        if mine:
            holds[roles.victim, label] = True
        for _ in range(holders - mine):
            holds[others[turn % len(others)], label] = True
            turn += 1
    return holds


def split_shared(train_y: np.ndarray, holds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each class's records in near-equal seeded shares among its holders (``holds[:, c]``)."""
    owner = np.full(len(train_y), -1, np.int64)
    for c in range(holds.shape[1]):
        idx = rng.permutation(np.flatnonzero(train_y == c))
        who = np.flatnonzero(holds[:, c])
        if len(idx) < len(who):
            raise ConfigError(
                f"fl.holders_per_class={len(who)}: class {c} has only {len(idx)} training "
                "records, fewer than its holders; use fewer holders or more data"
            )
        for p, part in zip(who, np.array_split(idx, len(who)), strict=True):
            owner[part] = p
    return owner


def split_dirichlet(
    train_y: np.ndarray, num_classes: int, num_participants: int, alpha: float, seed: int
) -> np.ndarray:
    """Each class's records split in proportions q ~ Dir(alpha, ..., alpha) over the
    participants, redrawn until every participant holds a record (module doc)."""
    rng = np.random.default_rng((seed, 2))
    owner = np.full(len(train_y), -1, np.int64)
    for _ in range(DIRICHLET_TRIES):
        for c in range(num_classes):
            idx = rng.permutation(np.flatnonzero(train_y == c))
            q = rng.dirichlet(np.full(num_participants, alpha))
            cuts = (np.cumsum(q)[:-1] * len(idx)).astype(int)
            for p, part in enumerate(np.split(idx, cuts)):
                owner[part] = p
        if np.bincount(owner[owner >= 0], minlength=num_participants).min() > 0:
            return owner
    raise ConfigError(
        f"fl.dirichlet_alpha={alpha}: in {DIRICHLET_TRIES} draws some participant of "
        f"{num_participants} held no record; raise alpha or use fewer participants"
    )


def records_per_class(owner: np.ndarray, train_y: np.ndarray, shape: tuple[int, int]):
    """``[N, C]``: how many training records of class c participant i holds."""
    table = np.zeros(shape, np.int64)
    np.add.at(table, (owner[owner >= 0], train_y[owner >= 0]), 1)
    return table


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
    owner: np.ndarray | None = None,
) -> tuple[ClientData, np.ndarray]:
    """Gives every participant its training records: those `owner` assigns it, or (None,
    the disjoint scheme) every record of its declared labels.

    Returns the padded `ClientData` (numpy) and ``owner`` (see `owners`). The capacity
    is the largest client's record count rounded up to `multiple_of` (one local batch),
    or `capacity` if given (a sweep passes its largest, so shapes never change).
    """
    if owner is None:
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


class Partition(NamedTuple):
    """A federation's data: padded `ClientData`, the owner of every record (-1: nobody)
    and the declared label sets ``[N, C]``."""

    clients: ClientData
    owner: np.ndarray
    declared: np.ndarray


def clients_from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_clients: int = 5,
    adversary: int = 0,
    victim: int = 1,
    victim_num_labels: int = 2,
    scheme: str = "disjoint",
    alpha: float = 0.5,
    holders: int = 2,
    num_classes: int | None = None,
    seed: int = 0,
    multiple_of: int = 1,
) -> Partition:
    """Splits the records ``(x [n, ...], y [n] ints)`` among `num_clients` participants
    under `scheme` (``disjoint``, ``dirichlet`` with `alpha`, ``shared`` with `holders`
    per class; module doc) and pads them into `ClientData`, capacity a multiple of
    `multiple_of` (one local batch, say). `num_classes` defaults to ``max(y) + 1``."""
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.shape[0] != y.shape[0] or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(
            f"x {x.shape} and y {y.shape} {y.dtype}: need as many records as labels, "
            "y one integer label per record"
        )
    c = int(y.max()) + 1 if num_classes is None else num_classes
    roles = Roles(num_clients, adversary, victim, victim_num_labels)
    declared, owner = assign(y, c, roles, Scheme(scheme, alpha, holders), seed)
    clients, owner = partition(x, y, declared, multiple_of=multiple_of, owner=owner)
    return Partition(clients, owner, declared)
