"""Membership-inference metrics on the host (numpy): confusion counts, ROC, AUC, TPR at FPR.

Conventions: ``is_member`` is the ground truth (True = the victim's training record),
``scores`` are larger for "more likely IN", ``decisions`` are the attack's IN/OUT marks.

* The paper's "inference accuracy" (Sec. IV-C) is IN-marked victim records / victim
  records, i.e. the TPR; it ignores false positives, so we report FPR, precision and
  balanced accuracy beside it.
* AUC is the area under the ROC curve with ties counted half (Mann-Whitney U).
* TPR at a fixed FPR (Carlini et al. 2022, "Membership inference attacks from first
  principles"): the largest TPR over ROC points whose FPR does not exceed the level.
  With fewer than 1/level non-members only FPR = 0 qualifies at that level.
"""

from __future__ import annotations

import numpy as np

FPR_LEVELS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}


def confusion(is_member: np.ndarray, decisions: np.ndarray) -> dict[str, int]:
    m, d = np.asarray(is_member, bool), np.asarray(decisions, bool)
    return {
        "tp": int(np.sum(m & d)),
        "fn": int(np.sum(m & ~d)),
        "fp": int(np.sum(~m & d)),
        "tn": int(np.sum(~m & ~d)),
    }


def roc_curve(is_member: np.ndarray, scores: np.ndarray):
    """(fpr, tpr, thresholds): one point per distinct score, from (0, 0) to (1, 1).

    The point for threshold s counts every record with score >= s as IN.
    """
    m = np.asarray(is_member, bool)
    s = np.asarray(scores, np.float64)
    if m.all() or not m.any():
        raise ValueError("ROC needs both members and non-members")
    order = np.argsort(-s, kind="stable")
    s, m = s[order], m[order]
    last_of_tie = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # not diff: inf - inf
    tps = np.cumsum(m)[last_of_tie]
    fps = np.cumsum(~m)[last_of_tie]
    tpr = np.r_[0.0, tps / m.sum()]
    fpr = np.r_[0.0, fps / (~m).sum()]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return fpr, tpr, thresholds


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Trapezoidal area under an ROC curve (ties -> diagonal segments -> counted half)."""
    return float(np.trapezoid(tpr, fpr))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, level: float) -> float:
    """The largest TPR among ROC points with FPR <= level."""
    ok = fpr <= level + 1e-12
    return float(tpr[ok].max())


def membership_metrics(
    is_member: np.ndarray, scores: np.ndarray, decisions: np.ndarray
) -> dict[str, float | int | None]:
    """Every metric that `results.json` reports for one attack under one protocol."""
    if np.asarray(is_member, bool).all() or not np.asarray(is_member, bool).any():
        raise ValueError("membership metrics need both members and non-members")
    counts = confusion(is_member, decisions)
    tp, fn, fp, tn = counts["tp"], counts["fn"], counts["fp"], counts["tn"]
    tpr = tp / (tp + fn)
    fpr_point = fp / (fp + tn)
    fpr, tpr_curve, _ = roc_curve(is_member, scores)
    out: dict[str, float | int | None] = dict(counts)
    out.update(
        tpr=tpr,
        fpr=fpr_point,
        precision=tp / (tp + fp) if tp + fp else None,
        balanced_accuracy=(tpr + 1.0 - fpr_point) / 2.0,
        auc=auc(fpr, tpr_curve),
        num_members=tp + fn,
        num_nonmembers=fp + tn,
    )
    for name, level in FPR_LEVELS.items():
        out[name] = tpr_at_fpr(fpr, tpr_curve, level)
    return out
