"""The colluding server from a config (driver/collusion.py): outputs, separation, secure
aggregation, resume, and one-line errors.

The federation is built to leak: 10 records per class, 30 local epochs, so every
participant memorises its records and its upload singles them out.
"""

import os
import shutil

import numpy as np
import pytest
from conftest import tiny_config
from sklearn.metrics import roc_auc_score

from fedgan_jax.core.errors import ConfigError
from fedgan_jax.driver import config_lib
from fedgan_jax.driver.engine import deal, run_of, server_view_of
from fedgan_jax.driver.experiment import load_data, train_and_evaluate

COLLUDING = ("source_inference", "fedmia")


def leaky_config(secure: bool = False):
    c = tiny_config()
    c.data.max_train_per_class = 10
    c.fl.rounds = 4
    c.fl.local_epochs = 30
    c.fl.batch_size = 10
    c.fl.secure_aggregation = secure
    c.checkpoint.every = 1
    c.checkpoint.keep = 4
    c.adversary.colludes = True
    c.adversary.count = 2  # participants 0 and 2 (1 is the victim)
    c.adversary.collude_rounds = 2
    c.attack.attacks = ("global_model", *COLLUDING)
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for view, secure in (("uploads", False), ("secure", True)):
        workdir = str(tmp_path_factory.mktemp(view) / "run")
        out[view] = (workdir, train_and_evaluate(leaky_config(secure), workdir, progress=False))
    return out


def _npz(workdir):
    return np.load(os.path.join(workdir, "membership.npz"))


def test_scores_and_metrics_are_written_under_both_protocols(runs):
    for workdir, result in runs.values():
        npz = _npz(workdir)
        for attack in COLLUDING:
            for protocol in ("paper", "strict"):
                member = npz[f"is_member__{protocol}"]
                score = npz[f"score__{attack}__{protocol}"]
                assert score.shape == member.shape and np.isfinite(score).all()
                assert npz[f"decision__{attack}__{protocol}"].dtype == bool
                auc = result["attacks"][attack][protocol]["auc"]
                assert auc == pytest.approx(roc_auc_score(member, score)), (attack, protocol)


def _other_participants_auc(workdir, attack):
    """The victim's records against the other (non-colluding) participants' records."""
    npz = _npz(workdir)
    return roc_auc_score(npz["is_member__paper"], npz[f"score__{attack}__paper"])


def test_each_upload_separates_the_victims_records_and_the_secure_sum_does_not(runs):
    open_dir, open_result = runs["uploads"]
    secure_dir, _ = runs["secure"]
    for attack in COLLUDING:
        assert _other_participants_auc(open_dir, attack) > 0.95, attack
        assert _other_participants_auc(secure_dir, attack) < 0.7, attack
        paper = open_result["attacks"][attack]["paper"]
        assert paper["tp"] >= 0.9 * 20 and paper["fp"] <= 2, (attack, paper)  # 20 members
    # No evidence about the source at all: every record scores the prior, none is IN.
    assert _other_participants_auc(secure_dir, "source_inference") == 0.5
    assert not _npz(secure_dir)["decision__source_inference__paper"].any()


def test_results_say_what_the_server_handed_out(runs):
    (_, open_result), (_, secure_result) = runs["uploads"], runs["secure"]
    assert open_result["colluding"]["view"] == "uploads"
    assert open_result["colluding"]["per_client"] is True
    assert secure_result["colluding"]["view"] == "secure_aggregation"
    assert secure_result["colluding"]["per_client"] is False
    for r in (open_result, secure_result):
        assert r["colluding"]["rounds"] == [3, 4]
        assert r["colluding"]["count"] == 2 and r["colluding"]["colluders"] == [0, 2]


def test_the_coalitions_records_are_not_counted_as_non_members(runs):
    workdir, _ = runs["uploads"]
    config = leaky_config()
    _, owner = deal(config, load_data(config), run_of(config))
    npz = _npz(workdir)
    for protocol in ("paper", "strict"):
        index = npz[f"index__{protocol}"]
        train = index[index < len(owner)]
        assert set(owner[train]) == {1, 3, 4}  # the victim and the participants outside


def test_resume_mid_watch_ends_like_the_uninterrupted_run(runs, tmp_path):
    """Resumed from round 3's checkpoint (one of the two watched rounds summed on disk):
    the same scores and results."""
    workdir, result = runs["uploads"]
    resumed = str(tmp_path / "resumed")
    shutil.copytree(workdir, resumed)
    os.remove(os.path.join(resumed, "results.json"))
    shutil.rmtree(os.path.join(resumed, "checkpoints", "4"))
    again = train_and_evaluate(leaky_config(), resumed, progress=False)
    assert again["resumed_from_round"] == 3
    assert again["attacks"] == result["attacks"]
    a, b = _npz(workdir), _npz(resumed)
    for field in a.files:
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)


def test_a_run_that_does_not_collude_builds_the_program_it_always_did():
    c = tiny_config()
    c.fl.rounds = 2  # fewer rounds than the default collude_rounds: nothing to watch
    config_lib.validate(c)
    assert server_view_of(c) == "none"
    c.fl.secure_aggregation = True  # nothing to hand out without a colluding adversary
    assert server_view_of(c) == "none"
    c.adversary.colludes = True
    assert server_view_of(c) == "secure_aggregation"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"attack.attacks": ("fedmia",)}, "adversary.colludes=False: the fedmia attack needs"),
        (
            {"attack.attacks": ("source_inference",)},
            "adversary.colludes=False: the source_inference attack needs",
        ),
        ({"adversary.colludes": True, "adversary.count": 5}, r"adversary.count=5: .*\[1, 4\]"),
        ({"adversary.count": 2}, "adversary.count=2: colluders pool the server's view"),
        (
            {"adversary.colludes": True, "adversary.collude_rounds": 4},
            "adversary.collude_rounds=4: it watches at most fl.rounds=3",
        ),
        ({"adversary.collude_rounds": 0}, "adversary.collude_rounds=0: must be an integer >= 1"),
        ({"adversary.fedmia_statistic": "grad"}, "adversary.fedmia_statistic='grad'"),
    ],
)
def test_bad_colluding_configs_fail_in_one_line(fields, message):
    c = tiny_config()
    for field, value in fields.items():
        section, name = field.split(".")
        c[section][name] = value
    with pytest.raises(ConfigError, match=message) as error:
        config_lib.validate(c)
    assert "\n" not in str(error.value)
