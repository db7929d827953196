"""``config.gan``: the generator's modes, their loss weights, and the section's check.

A mode (`MODES`) is a *preset* of loss weights (`MODE_DEFAULTS`, over the terms of
`LOSS_TERMS`; `gan_objective.py` computes them); each weight may be overridden
(``config.gan.loss.<term>``, -1 keeps the preset's). `objective_name` names what a run
really trains: the preset, then ``+term=weight`` for each weight that differs from it, in
`LOSS_TERMS` order (``paper``, ``paper+realism=0.3``, ``prior+diversity=0``,
``dafl+entropy=2.5+activation=0``).

`check_config` checks ``config.gan``: the trigger (`TRIGGERS`), the sizes, the figures, the
generator selection (`SELECTIONS`, scored by `gan_selection.py`) and the realism classes
(`REALISM_CLASSES`). `loss_weights` is the one place that checks the mode and the weights;
`gan.make_gan_trainer` calls it too, and `check_batch`. Plain Python, no JAX: the driver
checks a config here before anything compiles.
"""

from __future__ import annotations

from fedgan_jax.core import checks
from fedgan_jax.core.errors import ConfigError

MODES = ("paper", "dafl", "adversarial", "prior")
# When the generator starts: the main-task accuracy the server announces reaches the
# threshold (the paper), the global model's accuracy on the adversary's own records does,
# or a fixed round.
TRIGGERS = ("accuracy", "own_accuracy", "round")
# Which generator D_gen is drawn from: the last one, or the one (checked every
# gan.select_every rounds) whose samples of the adversary's own classes lie closest to its
# own records (`own_class_mmd`, in pixel space or in the global model's feature space): a
# label-free guard against collapse at long budgets.
SELECTIONS = ("last", "own_mmd", "own_feature_mmd")
# Which generated classes the realism term (the prior's) reads: every declared class, or
# only the adversary's own, the classes its real examples come from (TrainerSpec.realism_own).
REALISM_CLASSES = ("declared", "own")

LOSS_TERMS = ("ce", "entropy", "activation", "disagreement", "realism", "diversity")
# Loss weights per mode; the config may override each one (config.gan.loss.<term>).
MODE_DEFAULTS: dict[str, dict[str, float]] = {
    "paper": {"ce": 1.0},
    "dafl": {"ce": 1.0, "entropy": 5.0, "activation": 0.1},
    "adversarial": {"ce": 1.0, "disagreement": 1.0},
    "prior": {"ce": 1.0, "realism": 0.3, "diversity": 1.0},
}


def loss_weights(mode: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The preset `mode` with config overrides (-1 or None: keep the preset's weight).

    The one place that checks ``gan.mode`` and ``gan.loss.*`` (`ConfigError`).
    """
    checks.choice("gan.mode", mode, MODES)
    weights = {term: 0.0 for term in LOSS_TERMS} | MODE_DEFAULTS[mode]
    for term, value in (overrides or {}).items():
        field = f"gan.loss.{term}"
        if term not in LOSS_TERMS:
            checks.fail(field, value, f"unknown term; allowed: {', '.join(LOSS_TERMS)}")
        if value is None or checks.number(field, value, -1.0) == -1.0:
            continue
        if value < 0.0:
            checks.fail(field, value, "must be >= 0, or -1 for the mode's default")
        weights[term] = float(value)
    if weights["disagreement"] > 0 and weights["realism"] > 0:
        raise ConfigError(
            "gan.loss.disagreement and gan.loss.realism are both > 0: the first needs a "
            "student critic, the second a real/fake discriminator; use one of them"
        )
    return weights


def objective_name(mode: str, overrides: dict[str, float] | None = None) -> str:
    """The objective a run trains: the preset, then ``+term=weight`` for every weight
    that differs from it (in `LOSS_TERMS` order, weights as ``%g``).

    ``objective_name("paper") == "paper"``, ``objective_name("paper", {"realism": 0.3})
    == "paper+realism=0.3"``, ``objective_name("prior", {"diversity": 0}) ==
    "prior+diversity=0"``. An override equal to the preset's weight changes nothing.
    """
    preset = loss_weights(mode)
    weights = loss_weights(mode, overrides)
    changed = [f"+{t}={weights[t]:g}" for t in LOSS_TERMS if weights[t] != preset[t]]
    return mode + "".join(changed)


def check_batch(weights: dict[str, float], batch_per_class: int) -> None:
    """The diversity term compares pairs of samples of a class: it needs
    ``gan.batch_per_class`` >= 2 (`ConfigError`)."""
    if weights["diversity"] > 0 and batch_per_class < 2:
        checks.fail("gan.batch_per_class", batch_per_class, "the diversity term needs >= 2")


def split_figure_rounds(figure_rounds, rounds: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(kept, dropped)``: the rounds of `figure_rounds` within ``[1, rounds]``, and those
    beyond the last round (`config_lib.resolve` drops them with a warning). An entry that
    is not an integer >= 1 is a `ConfigError`."""
    values = tuple(figure_rounds)
    for r in values:
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            checks.fail("gan.figure_rounds", values, "must hold rounds (integers >= 1)")
    return tuple(r for r in values if r <= rounds), tuple(r for r in values if r > rounds)


def check_config(g, *, rounds: int, uses_gan: bool = True) -> dict[str, float]:
    """Checks ``config.gan`` (`rounds`: fl.rounds; `uses_gan`: the gan attack is on);
    returns the loss weights."""
    weights = loss_weights(g.mode, dict(g.loss))
    trigger = checks.choice("gan.trigger", g.trigger, TRIGGERS)
    checks.number("gan.trigger_accuracy", g.trigger_accuracy, 0.0, 1.0)
    trigger_round = checks.integer("gan.trigger_round", g.trigger_round, 1)
    if uses_gan and trigger == "round" and trigger_round > rounds:
        checks.fail("gan.trigger_round", trigger_round, f"must be <= fl.rounds={rounds}")
    checks.integer("gan.steps_per_round", g.steps_per_round, 1)
    check_batch(weights, checks.integer("gan.batch_per_class", g.batch_per_class, 1))
    checks.number("gan.learning_rate", g.learning_rate, 0.0, open_low=True)
    checks.number("gan.critic_learning_rate", g.critic_learning_rate, 0.0, open_low=True)
    checks.integer("gan.latent_dim", g.latent_dim, 1)
    channels = checks.integer("gan.channels", g.channels, 4)
    if channels % 4:
        checks.fail("gan.channels", channels, "must be a multiple of 4")
    checks.integer("gan.samples_per_class", g.samples_per_class, 1)
    checks.number("gan.keep_confidence", g.keep_confidence, 0.0, 1.0)
    checks.boolean("gan.filter_target", g.filter_target)
    split_figure_rounds(g.figure_rounds, rounds)
    checks.integer("gan.figure_per_class", g.figure_per_class, 1)
    checks.choice("gan.select", g.select, SELECTIONS)
    checks.integer("gan.select_every", g.select_every, 1)
    checks.integer("gan.select_patience", g.select_patience, 0)
    checks.choice("gan.realism_classes", g.realism_classes, REALISM_CLASSES)
    return weights
