"""Hidden declarations (``adversary.knows_declarations=False``, the paper's Sec. VI defense):
the adversary recovers who holds which labels from the global models alone.

Signal (LLG, Wainakh et al., PETS 2022). For softmax cross-entropy the gradient of the
last layer's bias is ``sum_i (p_i - y_i)``: negative for a class present in the batch,
positive for an absent one, summing to zero over the classes. A participant's SGD update
of the bias therefore *rises* on its own classes and falls on the others. Each round the
adversary sees ``M_t - M_{t-1} = sum_k w_k u_k / sum_k w_k``; it removes its own
contribution (when it was asked to train: its own update, which it can compute, times
1 / m, the uniform FedAvg weight of a cohort of m; with example weights that is an
approximation, the others' counts being unknown to it) and reads the classes the *others*
trained that round as those whose bias rose (`present`).

Grouping. Under partial participation (``fl.client_fraction`` < 1) a participant's classes
appear and vanish together, round after round, while two participants' classes co-occur
only when both are sampled. Classes whose presence patterns over the rounds differ in at
most ``tolerance x T`` rounds are linked, and the connected components are the recovered
label sets (`group_classes`). Classes never present (no other participant trained them:
under disjoint labels, the adversary's own) form no group. With full participation every
held class is present every round, so everything forms one group: the signal cannot split
the participants, and the recovery says so. Under shared or Dirichlet partitions a group is
the set of classes with the same holders, not one participant's.

Scoring is the experimenter's (`score`): the recovered groups against the true label sets.
The attacks are run on the group that matches the victim best (largest Jaccard index):
the adversary can run them on every group; we report the one for the victim.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

TOLERANCE = 0.1  # fraction of rounds two classes' presence may disagree and still link


def last_layer_bias(params, num_classes: int) -> jax.Array:
    """The classifier's output bias ``[..., C]``: the last ``bias`` leaf of width C."""
    found = [
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if getattr(path[-1], "key", None) == "bias" and leaf.shape[-1] == num_classes
    ]
    return found[-1]


def present(signal: np.ndarray) -> np.ndarray:
    """``[T, C]`` bool: the classes the others trained in each round (the bias rose);
    rounds with no signal (NaN: not observed) count as absent."""
    return np.nan_to_num(np.asarray(signal, np.float64), nan=0.0) > 0


def group_classes(presence: np.ndarray, tolerance: float = TOLERANCE) -> list[list[int]]:
    """Connected components of classes whose presence patterns ``[T, C]`` differ in at
    most ``tolerance * T`` rounds; classes never present are left out."""
    rounds, num_classes = presence.shape
    seen = np.flatnonzero(presence.any(0))
    distance = (presence[:, seen, None] != presence[:, None, seen]).sum(0)
    linked = distance <= tolerance * rounds
    label = list(range(len(seen)))

    def root(i):
        while label[i] != i:
            i = label[i]
        return i

    for i, j in zip(*np.nonzero(linked), strict=True):
        label[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(seen):
        groups.setdefault(root(i), []).append(int(c))
    return sorted(groups.values())


def recover(signal: np.ndarray, tolerance: float = TOLERANCE) -> list[list[int]]:
    """The recovered label sets from the others' per-round bias change ``[T, C]``."""
    return group_classes(present(signal), tolerance)


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)


def score(groups: list[list[int]], declared: np.ndarray, *, adversary: int, victim: int) -> dict:
    """How well `groups` recover the true label sets ``declared[N, C]``.

    ``accuracy``: the fraction of the other participants (all but the adversary) whose
    label set is exactly one recovered group. ``victim_labels``: the group matching the
    victim best (Jaccard), the set the attacks use; ``victim_exact`` / ``victim_jaccard``
    score it. A chance-level recovery scores an accuracy near 0.
    """
    truth = {p: set(np.flatnonzero(row).tolist()) for p, row in enumerate(declared)}
    others = [p for p in truth if p != adversary]
    found = [set(g) for g in groups]
    exact = [p for p in others if truth[p] in found]
    best = max(found, key=lambda g: _jaccard(g, truth[victim]), default=set())
    return {
        "accuracy": len(exact) / len(others),
        "victim_labels": sorted(best),
        "victim_exact": best == truth[victim],
        "victim_jaccard": _jaccard(best, truth[victim]),
        "recovered_sets": [sorted(g) for g in found],
        "tolerance": TOLERANCE,
    }


def victim_row(score_of_run: dict[str, Any], num_classes: int) -> np.ndarray:
    """``[C]`` bool: the recovered victim label set, as a declared row."""
    row = np.zeros(num_classes, bool)
    row[score_of_run["victim_labels"]] = True
    return row
