"""Shared fixtures: a shrunken config that runs the whole pipeline in seconds.

XLA's persistent compilation cache is switched on for the test process and every launcher
it starts (they inherit the environment): the same tiny programs are compiled once per
machine instead of once per test, which cuts the suite's time by about half.
"""

import os

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_ROOT, ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

from configs import demo  # noqa: E402  (after the environment above)


def tiny_config():
    """The demo config shrunk: 400 bundled training images, 3 rounds, a small generator."""
    c = demo.get_config()
    c.data.max_train_per_class = 40
    c.fl.rounds = 3
    c.fl.batch_size = 32
    c.gan.trigger = "round"
    c.gan.trigger_round = 2
    c.gan.steps_per_round = 3
    c.gan.batch_per_class = 2
    c.gan.channels = 8
    c.gan.samples_per_class = 8
    c.gan.figure_rounds = (3,)
    c.gan.figure_per_class = 2
    c.attack.epochs = 1
    c.attack.batch_size = 32
    c.eval.batch_size = 500
    c.checkpoint.every = 1
    return c


@pytest.fixture
def tiny():
    return tiny_config()


# The files whose tests take longest (a module fixture runs a whole federation, or a test
# starts launchers in fresh processes), longest first. They are collected before the
# rest so that, with several test processes (`make test`: pytest-xdist, whole files per
# process), no long file starts last while the other processes sit idle. Order only:
# every test still runs, and alone each file runs as before.
LONG_FIRST = (
    "test_lira_run.py",
    "test_multihost.py",
    "test_robustness.py",
    "test_sharding.py",
    "test_report.py",
    "test_sweep.py",
    "test_run_smoke.py",
    "test_tfds_prepare.py",
    "test_threat_model.py",
    "test_colluding_run.py",
    "test_membership.py",
    "test_attack_e2e.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the order within a file and among the rest is kept
