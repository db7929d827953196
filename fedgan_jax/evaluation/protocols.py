"""Who counts as a member: the evaluation protocols (host-side, numpy).

Attacks score a fixed *pool* of records: every training record (indices ``0..n_train-1``)
followed by every test record (``n_train..``). A protocol picks the target set from it:

* ``paper`` (Sec. IV-C): members are the victim's training records, non-members the
  other benign participants' training records (the adversary's own records are left out:
  it knows them; so are those of the participants colluding with it, ``colluders``).
* ``strict``: the paper's set plus held-out test records *of the victim's own classes*
  as non-members, as many as there are members (fewer if the test split has fewer; seeded
  choice). A label-based attack marks them IN, so this protocol separates membership
  inference from label inference.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fedgan_jax.evaluation import metrics

PROTOCOLS = ("paper", "strict")


@dataclasses.dataclass(frozen=True)
class TargetSet:
    index: np.ndarray  # pool indices of the target records
    is_member: np.ndarray  # ground truth per target record


def target_sets(
    owner: np.ndarray,
    test_y: np.ndarray,
    *,
    victim: int,
    adversary: int,
    victim_labels: np.ndarray,
    seed: int,
    protocols=PROTOCOLS,
    colluders=(),
) -> dict[str, TargetSet]:
    """The target set of each protocol (see module doc). `owner[i]` owns train record i."""
    members = np.flatnonzero(owner == victim)
    known = np.isin(owner, [adversary, *colluders])  # the coalition's own records
    others = np.flatnonzero((owner >= 0) & (owner != victim) & ~known)
    sets = {}
    paper_index = np.concatenate([members, others])
    paper_truth = np.r_[np.ones(len(members), bool), np.zeros(len(others), bool)]
    if "paper" in protocols:
        sets["paper"] = TargetSet(paper_index, paper_truth)
    if "strict" in protocols:
        held_out = np.flatnonzero(np.asarray(victim_labels, bool)[test_y]) + len(owner)
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.permutation(held_out)[: len(members)])
        sets["strict"] = TargetSet(
            np.concatenate([paper_index, chosen]),
            np.r_[paper_truth, np.zeros(len(chosen), bool)],
        )
    return sets


def evaluate(
    scores: dict[str, np.ndarray],
    decisions: dict[str, np.ndarray],
    targets: dict[str, TargetSet],
) -> dict[str, dict[str, dict]]:
    """``result[attack][protocol]`` = `metrics.membership_metrics` on that target set."""
    return {
        attack: {
            protocol: metrics.membership_metrics(
                t.is_member, scores[attack][t.index], decisions[attack][t.index]
            )
            for protocol, t in targets.items()
        }
        for attack in scores
    }
