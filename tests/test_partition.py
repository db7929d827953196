"""Partitions (fl.partition): disjoint (the paper), shared and dirichlet.

Hand-checkable properties: every record goes to exactly one participant, holders and
proportions are as configured, the same seed gives the same partition, and impossible
requests stop with one line naming the field.
"""

import numpy as np
import pytest

from fedgan_jax.core.errors import ConfigError
from fedgan_jax.data import partition
from fedgan_jax.driver import config_lib
from tests.conftest import tiny_config

ROLES = partition.Roles(num_participants=5, adversary=0, victim=1, victim_num_labels=2)


def _labels(per_class=100, classes=10, seed=0):
    y = np.repeat(np.arange(classes), per_class)
    return y[np.random.default_rng(seed).permutation(len(y))]


@pytest.mark.parametrize("seed", [0, 3])
def test_disjoint_is_the_papers_deal(seed):
    y = _labels()
    declared, owner = partition.assign(y, 10, ROLES, partition.Scheme(), seed)
    expected = partition.deal_labels(10, ROLES, seed)
    np.testing.assert_array_equal(declared, expected)
    np.testing.assert_array_equal(owner, partition.owners(y, expected))


@pytest.mark.parametrize("holders", [1, 2, 3, 4])
def test_shared_every_class_has_its_holders_and_the_victim_keeps_its_k(holders):
    y = _labels(per_class=101)
    declared, owner = partition.assign(y, 10, ROLES, partition.Scheme("shared", holders=holders), 5)
    table = partition.records_per_class(owner, y, declared.shape)
    assert (owner >= 0).all() and table.sum() == len(y)  # every record once
    np.testing.assert_array_equal(declared.sum(0), np.full(10, holders))
    np.testing.assert_array_equal(declared, table > 0)
    # The victim holds exactly the disjoint deal's k classes, shared with holders-1 others.
    disjoint = partition.deal_labels(10, ROLES, 5)
    np.testing.assert_array_equal(declared[ROLES.victim], disjoint[ROLES.victim])
    # A class's records are split evenly among its holders (101 records: 51/50, 34/34/33..).
    for c in range(10):
        shares = table[declared[:, c], c]
        assert shares.max() - shares.min() <= 1 and shares.sum() == 101
    assert declared.any(1).all()  # every participant holds records


def test_dirichlet_every_record_once_and_everyone_holds_some():
    y = _labels()
    for seed in range(5):
        declared, owner = partition.assign(
            y, 10, ROLES, partition.Scheme("dirichlet", alpha=0.1), seed
        )
        table = partition.records_per_class(owner, y, declared.shape)
        assert (owner >= 0).all() and table.sum() == len(y)
        assert (table.sum(1) > 0).all()
        np.testing.assert_array_equal(declared, table > 0)


@pytest.mark.parametrize("alpha", [0.3, 5.0])
def test_dirichlet_shares_have_the_dirichlet_variance(alpha):
    """Var(q_i) of Dir(alpha, ..., alpha) over N is (1/N)(1 - 1/N) / (N alpha + 1)."""
    classes, n = 200, 5
    y = _labels(per_class=2000, classes=classes)
    roles = partition.Roles(n, 0, 1, 1)
    _, owner = partition.assign(y, classes, roles, partition.Scheme("dirichlet", alpha=alpha), 1)
    shares = partition.records_per_class(owner, y, (n, classes)) / 2000
    expected = (1 / n) * (1 - 1 / n) / (n * alpha + 1)
    assert shares.var() == pytest.approx(expected, rel=0.2)
    np.testing.assert_allclose(shares.mean(1), 1 / n, atol=0.05 if alpha > 1 else 0.1)


@pytest.mark.parametrize("name", ["shared", "dirichlet"])
def test_partitions_are_seeded(name):
    y = _labels()
    scheme = partition.Scheme(name, alpha=0.5, holders=2)
    a = partition.assign(y, 10, ROLES, scheme, 7)
    b = partition.assign(y, 10, ROLES, scheme, 7)
    c = partition.assign(y, 10, ROLES, scheme, 8)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize(
    "scheme, y, match",
    [
        (partition.Scheme("dirichlet", alpha=0.0), _labels(), r"^fl.dirichlet_alpha=0.0: "),
        (partition.Scheme("dirichlet", alpha=-1.0), _labels(), r"^fl.dirichlet_alpha=-1.0: "),
        (partition.Scheme("shared", holders=5), _labels(), r"^fl.holders_per_class=5: "),
        (partition.Scheme("overlap"), _labels(), r"^fl.partition='overlap': "),
        # 3 holders of class 0, which has only 2 records.
        (partition.Scheme("shared", holders=3), np.r_[0, 0, _labels()[_labels() > 0]], "class 0"),
        # one record, five participants: someone always ends empty-handed.
        (partition.Scheme("dirichlet", alpha=1.0), np.array([3]), "held no record"),
    ],
)
def test_impossible_partitions_stop_with_one_line(scheme, y, match):
    with pytest.raises(ConfigError, match=match) as e:
        partition.assign(y, 10, ROLES, scheme, 0)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("partition", "iid", r"^fl.partition='iid': "),
        ("dirichlet_alpha", 0.0, r"^fl.dirichlet_alpha=0.0: "),
        ("holders_per_class", 5, r"^fl.holders_per_class=5: "),
    ],
)
def test_config_rejects_impossible_partitions(field, value, match):
    config = tiny_config()
    if field != "partition":
        config.fl.partition = "shared" if field == "holders_per_class" else "dirichlet"
    config.fl[field] = value
    with pytest.raises(ConfigError, match=match):
        config_lib.validate(config)


def test_dirichlet_ignores_k_but_disjoint_checks_it():
    config = tiny_config()
    config.fl.victim_num_labels = 8  # 5 participants: 3 others on 2 labels, impossible
    with pytest.raises(ConfigError, match="fl.victim_num_labels=8"):
        config_lib.validate(config)
    config.fl.partition = "dirichlet"
    config_lib.validate(config)
