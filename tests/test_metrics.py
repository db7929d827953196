"""Membership metrics (fedgan_jax.evaluation.metrics) and evaluation protocols
(fedgan_jax.evaluation.protocols).

Expected values are derived by hand in the comments; sklearn is only the cross-check on
random data.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from fedgan_jax.evaluation import metrics, protocols

# --------------------------------------------------------------------------- hand examples


def _records(member_scores, nonmember_scores, member_dec, nonmember_dec):
    """Interleave members and non-members so that nothing relies on input order."""
    is_member = np.r_[np.ones(len(member_scores), bool), np.zeros(len(nonmember_scores), bool)]
    scores = np.r_[member_scores, nonmember_scores].astype(np.float64)
    decisions = np.r_[member_dec, nonmember_dec].astype(bool)
    perm = np.random.default_rng(0).permutation(len(is_member))
    return is_member[perm], scores[perm], decisions[perm]


# Case "distinct": members score 0.9 0.8 0.4 0.3, non-members 0.7 0.5 0.2 0.1.
# Decisions: members IN IN OUT IN -> tp=3 fn=1; non-members IN OUT OUT OUT -> fp=1 tn=3.
# tpr = 3/4, fpr = 1/4, precision = 3/(3+1), balanced = (3/4 + 1 - 1/4)/2 = 3/4.
# AUC = pairs (member > non-member) / 16: 0.9 and 0.8 beat all 4 (8), 0.4 and 0.3 beat
# 0.2 and 0.1 (4) -> 12/16 = 0.75.
# Zero false positives: only 0.9, 0.8 rank above the best non-member 0.7 -> TPR 2/4; with
# 4 non-members, FPR <= 1% and <= 0.1% both mean FPR = 0 -> 0.5 for both levels.
DISTINCT = (
    _records([0.9, 0.8, 0.4, 0.3], [0.7, 0.5, 0.2, 0.1], [1, 1, 0, 1], [1, 0, 0, 0]),
    dict(
        tp=3, fn=1, fp=1, tn=3, tpr=0.75, fpr=0.25, precision=0.75, balanced_accuracy=0.75,
        auc=0.75, num_members=4, num_nonmembers=4,
        **{"tpr_at_1pct_fpr": 0.5, "tpr_at_0.1pct_fpr": 0.5},
    ),
)  # fmt: skip

# Case "ties, nothing IN": members 0.8 0.5 0.5 0.2, non-members 0.5 0.5 0.3 0.1, every
# decision OUT -> tp=0 fn=4 fp=0 tn=4, tpr=0, fpr=0, precision undefined (None),
# balanced = (0 + 1 - 0)/2 = 0.5.
# AUC with ties half: 0.8 beats 4 (4); each member 0.5 ties two 0.5s (2 * 0.5) and beats
# 0.3, 0.1 (2) -> 3 each (6); 0.2 beats 0.1 (1) -> 11/16 = 0.6875.
# Zero false positives: only 0.8 ranks above every non-member -> 1/4.
TIES_NONE_IN = (
    _records([0.8, 0.5, 0.5, 0.2], [0.5, 0.5, 0.3, 0.1], [0, 0, 0, 0], [0, 0, 0, 0]),
    dict(
        tp=0, fn=4, fp=0, tn=4, tpr=0.0, fpr=0.0, precision=None, balanced_accuracy=0.5,
        auc=0.6875, num_members=4, num_nonmembers=4,
        **{"tpr_at_1pct_fpr": 0.25, "tpr_at_0.1pct_fpr": 0.25},
    ),
)  # fmt: skip

# Case "many non-members": 200 non-members score 0..199; members 250, 198.5, 197.5, -1;
# members IN, non-members >= 198 IN (2 of them), rest OUT -> tp=4 fn=0 fp=2 tn=198,
# tpr=1, fpr=2/200, precision 4/6, balanced = (1 + 1 - 0.01)/2 = 0.995.
# Ranking: 250 M (fpr 0, tpr 1/4), 199 N, 198.5 M (fpr 1/200, tpr 2/4), 198 N,
# 197.5 M (fpr 2/200 = 1% exactly, tpr 3/4), ... -1 M last.
# TPR at FPR <= 1% -> 3/4 (the level itself counts); at <= 0.1% only FPR = 0 -> 1/4.
# AUC: 250 beats 200, 198.5 beats 199 (0..198), 197.5 beats 198, -1 beats 0
# -> (200 + 199 + 198) / 800 = 597/800.
MANY_NONMEMBERS = (
    _records(
        [250, 198.5, 197.5, -1],
        np.arange(200),
        [1, 1, 1, 1],
        np.arange(200) >= 198,
    ),
    dict(
        tp=4, fn=0, fp=2, tn=198, tpr=1.0, fpr=0.01, precision=4 / 6,
        balanced_accuracy=0.995, auc=597 / 800, num_members=4, num_nonmembers=200,
        **{"tpr_at_1pct_fpr": 0.75, "tpr_at_0.1pct_fpr": 0.25},
    ),
)  # fmt: skip

HAND_CASES = {"distinct": DISTINCT, "ties_none_in": TIES_NONE_IN, "many": MANY_NONMEMBERS}


@pytest.mark.parametrize("case", HAND_CASES)
def test_confusion_by_hand(case):
    (is_member, _, decisions), expected = HAND_CASES[case]
    got = metrics.confusion(is_member, decisions)
    assert got == {k: expected[k] for k in ("tp", "fn", "fp", "tn")}
    assert all(type(v) is int for v in got.values())


@pytest.mark.parametrize("case", HAND_CASES)
def test_membership_metrics_by_hand(case):
    (is_member, scores, decisions), expected = HAND_CASES[case]
    got = metrics.membership_metrics(is_member, scores, decisions)
    assert set(got) == set(expected)
    for key, value in expected.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, abs=1e-12), key
    assert type(got["num_members"]) is int and type(got["num_nonmembers"]) is int


def test_membership_metrics_accepts_lists_and_int_decisions():
    (is_member, scores, decisions), expected = DISTINCT
    got = metrics.membership_metrics(
        is_member.astype(int).tolist(), scores.tolist(), decisions.astype(int).tolist()
    )
    assert got["tp"] == expected["tp"] and got["auc"] == pytest.approx(expected["auc"])


def test_fpr_levels():
    assert metrics.FPR_LEVELS == {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}


# --------------------------------------------------------------------------- roc_curve


def test_roc_curve_by_hand():
    # Distinct case sorted by score: 0.9 M, 0.8 M, 0.7 N, 0.5 N, 0.4 M, 0.3 M, 0.2 N, 0.1 N.
    # Each step adds 1/4 to tpr (member) or fpr (non-member).
    (is_member, scores, _), _ = DISTINCT
    fpr, tpr, thresholds = metrics.roc_curve(is_member, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.25, 0.5, 0.5, 0.5, 0.75, 1])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.5, 0.5, 0.5, 0.75, 1, 1, 1])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1])


def test_roc_curve_ties_collapse():
    # Ties case: distinct scores 0.8 (1 M), 0.5 (2 M + 2 N), 0.3 (N), 0.2 (M), 0.1 (N).
    # The four 0.5s form ONE point: (0, 1/4) jumps to (2/4, 3/4).
    (is_member, scores, _), _ = TIES_NONE_IN
    fpr, tpr, thresholds = metrics.roc_curve(is_member, scores)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.75, 0.75, 1])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.75, 0.75, 1, 1])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.8, 0.5, 0.3, 0.2, 0.1])
    # Trapezoid over the diagonal tie segment: .5*(.25+.75)/2 + .25*.75 + .25*1 = 0.6875.
    assert metrics.auc(fpr, tpr) == pytest.approx(0.6875)


def test_roc_curve_all_tied():
    # One distinct score: the curve is the diagonal, AUC 1/2.
    fpr, tpr, thresholds = metrics.roc_curve([1, 0, 1, 0, 0], [3.0] * 5)
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])
    np.testing.assert_array_equal(thresholds, [np.inf, 3.0])
    assert metrics.auc(fpr, tpr) == 0.5


def test_roc_curve_infinite_scores_tie():
    # Two members and one non-member at +inf, a non-member at 0: the +inf scores are one
    # tie -> points (0,0), (1/2, 1), (1, 1); AUC = (2 * 0.5 + 2 * 1) / 4 = 0.75.
    # (np.diff would give inf - inf = nan and split the tie.)
    with np.errstate(invalid="raise"):
        fpr, tpr, thresholds = metrics.roc_curve([1, 1, 0, 0], [np.inf, np.inf, np.inf, 0.0])
    np.testing.assert_allclose(fpr, [0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1, 1])
    np.testing.assert_array_equal(thresholds, [np.inf, np.inf, 0.0])
    assert metrics.auc(fpr, tpr) == pytest.approx(0.75)
    # -inf tie: member 2.0 beats both non-members (2), member -inf ties -inf (0.5) -> 2.5/4.
    fpr, tpr, _ = metrics.roc_curve([1, 0, 0, 1], [-np.inf, -np.inf, 1.0, 2.0])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1])
    assert metrics.auc(fpr, tpr) == pytest.approx(0.625)


@pytest.mark.parametrize("seed", range(4))
def test_roc_curve_shape_and_monotone(seed):
    rng = np.random.default_rng(seed)
    is_member = rng.random(60) < 0.4
    scores = np.round(rng.normal(size=60), 1)  # plenty of ties
    fpr, tpr, thresholds = metrics.roc_curve(is_member, scores)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds) < 0)
    assert len(fpr) == len(np.unique(scores)) + 1


@pytest.mark.parametrize("is_member", [[True, True, True], [False, False], [1], np.zeros(5, bool)])
def test_roc_curve_needs_both_classes(is_member):
    with pytest.raises(ValueError, match="both"):
        metrics.roc_curve(is_member, np.arange(len(is_member), dtype=float))


def test_membership_metrics_needs_both_classes():
    with pytest.raises((ValueError, ZeroDivisionError)):
        metrics.membership_metrics([True, True], [0.1, 0.2], [True, False])


# --------------------------------------------------------------------------- vs sklearn


def _random(seed, n=300, decimals=None):
    rng = np.random.default_rng(seed)
    is_member = rng.random(n) < rng.uniform(0.2, 0.8)
    scores = rng.normal(size=n) + is_member * rng.uniform(0, 2)
    if decimals is not None:
        scores = np.round(scores, decimals)
    return is_member, scores


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn(seed, decimals):
    is_member, scores = _random(seed, decimals=decimals)
    fpr, tpr, _ = metrics.roc_curve(is_member, scores)
    expected = skm.roc_auc_score(is_member, scores)
    assert metrics.auc(fpr, tpr) == pytest.approx(expected, abs=1e-12)
    decisions = scores > 0
    got = metrics.membership_metrics(is_member, scores, decisions)
    assert got["auc"] == pytest.approx(expected, abs=1e-12)
    assert got["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(is_member, decisions)
    )
    assert got["precision"] == pytest.approx(skm.precision_score(is_member, decisions))
    assert got["tpr"] == pytest.approx(skm.recall_score(is_member, decisions))


@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", range(5))
def test_roc_curve_matches_sklearn(seed, decimals):
    is_member, scores = _random(seed, decimals=decimals)
    fpr, tpr, thresholds = metrics.roc_curve(is_member, scores)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(is_member, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, atol=1e-12)
    np.testing.assert_array_equal(thresholds, sk_thr)


def test_float32_scores_keep_ties():
    is_member, scores = _random(7, decimals=1)
    s32 = scores.astype(np.float32)
    fpr, tpr, _ = metrics.roc_curve(is_member, s32)
    assert len(fpr) == len(np.unique(s32)) + 1
    assert metrics.auc(fpr, tpr) == pytest.approx(skm.roc_auc_score(is_member, s32))


# --------------------------------------------------------------------------- tpr_at_fpr


def test_tpr_at_fpr_by_hand():
    # Distinct-case curve: fpr 0 0 0 .25 .5 .5 .5 .75 1 / tpr 0 .25 .5 .5 .5 .75 1 1 1.
    fpr = np.array([0, 0, 0, 0.25, 0.5, 0.5, 0.5, 0.75, 1])
    tpr = np.array([0, 0.25, 0.5, 0.5, 0.5, 0.75, 1, 1, 1])
    assert metrics.tpr_at_fpr(fpr, tpr, 0.0) == 0.5
    assert metrics.tpr_at_fpr(fpr, tpr, 0.2) == 0.5
    assert metrics.tpr_at_fpr(fpr, tpr, 0.25) == 0.5
    assert metrics.tpr_at_fpr(fpr, tpr, 0.5) == 1.0
    assert metrics.tpr_at_fpr(fpr, tpr, 1.0) == 1.0


def _brute_force_tpr_at_fpr(is_member, scores, level):
    best = 0.0  # threshold +inf: nothing IN, (0, 0)
    for t in np.unique(scores):
        inside = scores >= t
        if inside[~is_member].mean() <= level:
            best = max(best, inside[is_member].mean())
    return best


@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("seed", range(4))
def test_tpr_at_fpr_brute_force(seed, decimals):
    is_member, scores = _random(seed, n=400, decimals=decimals)
    fpr, tpr, _ = metrics.roc_curve(is_member, scores)
    for level in (0.0, 0.001, 0.01, 0.05, 0.1, 0.3, 1.0):
        expected = _brute_force_tpr_at_fpr(is_member, scores, level)
        assert metrics.tpr_at_fpr(fpr, tpr, level) == pytest.approx(expected), level


@pytest.mark.parametrize("seed", range(4))
def test_tpr_at_zero_fpr_is_members_above_every_nonmember(seed):
    is_member, scores = _random(seed, decimals=1)
    fpr, tpr, _ = metrics.roc_curve(is_member, scores)
    expected = np.mean(scores[is_member] > scores[~is_member].max())
    assert metrics.tpr_at_fpr(fpr, tpr, 0.0) == pytest.approx(expected)


def test_tpr_at_fpr_level_is_inclusive():
    # 100 non-members 0..99, members 99.5 and 98.5 and 50.5: at threshold 98.5 exactly one
    # false positive (99) -> FPR = 1/100 = level -> counts; TPR 2/3. Below it: 1/3.
    scores = np.r_[np.arange(100.0), 99.5, 98.5, 50.5]
    is_member = np.r_[np.zeros(100, bool), np.ones(3, bool)]
    fpr, tpr, _ = metrics.roc_curve(is_member, scores)
    assert metrics.tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(2 / 3)
    assert metrics.tpr_at_fpr(fpr, tpr, 0.0099) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- protocols

# 10 training records; owner -1 = unassigned. Victim 0, adversary 3.
#   members (owner 0): 0, 5, 8
#   other benign participants (owners 1, 2): 1, 2, 3, 7    (adversary's 6, 9 and the
#   unassigned 4 are left out)
OWNER = np.array([0, 1, 2, 1, -1, 0, 3, 2, 0, 3])
N_TRAIN = len(OWNER)
# 8 test records -> pool indices 10..17.
TEST_Y = np.array([0, 1, 2, 0, 2, 1, 0, 2])
MEMBERS = [0, 5, 8]
OTHERS = [1, 2, 3, 7]


def _targets(victim_labels, seed=0, **kwargs):
    return protocols.target_sets(
        OWNER, TEST_Y, victim=0, adversary=3, victim_labels=np.asarray(victim_labels, bool),
        seed=seed, **kwargs,
    )  # fmt: skip


def test_paper_protocol():
    t = _targets([True, False, True])["paper"]
    np.testing.assert_array_equal(t.index, MEMBERS + OTHERS)
    np.testing.assert_array_equal(t.is_member, [True] * 3 + [False] * 4)


@pytest.mark.parametrize("seed", [0, 1, 2, (5, 11)])
def test_strict_protocol_enough_held_out(seed):
    # Victim classes {0, 2}: test records 0, 2, 3, 4, 6, 7 -> pool 10, 12, 13, 14, 16, 17.
    # 3 members -> 3 of these 6 are chosen.
    sets = _targets([True, False, True], seed=seed)
    paper, strict = sets["paper"], sets["strict"]
    np.testing.assert_array_equal(strict.index[:7], paper.index)
    np.testing.assert_array_equal(strict.is_member[:7], paper.is_member)
    chosen = strict.index[7:]
    assert len(chosen) == 3 and not strict.is_member[7:].any()
    assert set(chosen) <= {10, 12, 13, 14, 16, 17}
    assert len(set(chosen)) == 3 and np.all(np.diff(chosen) > 0)
    assert np.isin(TEST_Y[chosen - N_TRAIN], [0, 2]).all()
    again = _targets([True, False, True], seed=seed)["strict"]
    np.testing.assert_array_equal(again.index, strict.index)


def test_strict_protocol_seed_changes_choice():
    choices = {tuple(_targets([True, False, True], seed=s)["strict"].index) for s in range(20)}
    assert len(choices) > 1  # C(6, 3) = 20 possible subsets


def test_strict_protocol_fewer_held_out():
    # Victim class {1}: only test records 1, 5 -> pool 11, 15, both taken (2 < 3 members).
    strict = _targets([False, True, False], seed=3)["strict"]
    np.testing.assert_array_equal(strict.index, MEMBERS + OTHERS + [11, 15])
    np.testing.assert_array_equal(strict.is_member, [True] * 3 + [False] * 6)


def test_strict_protocol_no_held_out():
    strict = protocols.target_sets(
        OWNER, np.array([1, 1, 2]), victim=0, adversary=3,
        victim_labels=np.array([True, False, False]), seed=0,
    )["strict"]  # fmt: skip
    np.testing.assert_array_equal(strict.index, MEMBERS + OTHERS)


def test_target_sets_protocol_subset():
    assert set(_targets([True, False, True], protocols=("paper",))) == {"paper"}
    assert set(_targets([True, False, True], protocols=("strict",))) == {"strict"}
    assert set(_targets([True, False, True])) == set(protocols.PROTOCOLS) == {"paper", "strict"}


def test_evaluate_matches_membership_metrics():
    targets = _targets([True, False, True], seed=1)
    rng = np.random.default_rng(0)
    n_pool = N_TRAIN + len(TEST_Y)
    scores = {"a": rng.random(n_pool), "b": np.round(rng.random(n_pool), 1)}
    decisions = {"a": rng.random(n_pool) < 0.5, "b": rng.random(n_pool) < 0.3}
    result = protocols.evaluate(scores, decisions, targets)
    assert set(result) == {"a", "b"}
    for attack in scores:
        assert set(result[attack]) == {"paper", "strict"}
        for protocol, t in targets.items():
            expected = metrics.membership_metrics(
                t.is_member, scores[attack][t.index], decisions[attack][t.index]
            )
            assert result[attack][protocol] == expected


def test_evaluate_label_attack_by_hand():
    # An attack that marks IN the victim's records and every held-out test record (as a
    # label-based attack does for the victim's classes), score = decision.
    # paper: members 3 IN, others 4 OUT -> tpr 1, fpr 0, precision 1, auc 1.
    # strict: + 3 held-out non-members marked IN -> fp 3, tn 4, fpr 3/7, precision 3/6,
    #   balanced (1 + 4/7)/2 = 11/14, auc = (3*4 pairs won + 3*3 ties * 1/2) / 21 = 16.5/21.
    targets = _targets([True, False, True], seed=0)
    n_pool = N_TRAIN + len(TEST_Y)
    marked = np.zeros(n_pool, bool)
    marked[MEMBERS] = True
    marked[N_TRAIN:] = True
    result = protocols.evaluate({"label": marked.astype(float)}, {"label": marked}, targets)
    paper, strict = result["label"]["paper"], result["label"]["strict"]
    assert (paper["tp"], paper["fn"], paper["fp"], paper["tn"]) == (3, 0, 0, 4)
    assert paper["tpr"] == 1 and paper["fpr"] == 0 and paper["precision"] == 1
    assert paper["auc"] == pytest.approx(1.0)
    assert (strict["tp"], strict["fn"], strict["fp"], strict["tn"]) == (3, 0, 3, 4)
    assert strict["fpr"] == pytest.approx(3 / 7) and strict["precision"] == pytest.approx(0.5)
    assert strict["balanced_accuracy"] == pytest.approx(11 / 14)
    assert strict["auc"] == pytest.approx(16.5 / 21)
    assert strict["num_members"] == 3 and strict["num_nonmembers"] == 7
