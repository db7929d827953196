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
