"""The adversary's settings: the check of ``config.adversary`` and its static `Plan`.

`check_config` checks what the adversary keeps and uploads (`uploads.check_config`) and
whether it colludes with the server (`collusion.check_config`); `config_lib.validate`
calls it. `Plan` is read once from the whole config (the trigger and the generator
selection of ``config.gan``, the attacks, its upload, what label recovery knows of the
protocol) and is the static argument of the host functions of `adversary.py` (each
round) and `adversary_attacks.py` (after the last). The threat model all of them keep
is in `adversary.py`'s docstring.
"""

from __future__ import annotations

import dataclasses

from fedgan_jax.adversary import uploads
from fedgan_jax.core import checks
from fedgan_jax.core.types import Config
from fedgan_jax.driver import collusion
from fedgan_jax.driver.engine import clients_per_round as engine_clients_per_round
from fedgan_jax.federation import fedavg as federated


def check_config(section, rounds: int, attacks: tuple[str, ...], num_participants: int) -> None:
    """``config.adversary``: what it keeps and what it uploads (`uploads.check_config`),
    and whether it colludes with the server (`collusion.check_config`)."""
    every = checks.integer("adversary.snapshot_every", section.snapshot_every, 0, rounds)
    if "trajectory" in attacks and not every:
        checks.fail("adversary.snapshot_every", every, "the trajectory attack needs snapshots")
    checks.integer("adversary.own_eval_every", section.own_eval_every, 1)
    uploads.check_config(section, rounds, attacks)
    collusion.check_config(section, rounds, attacks, num_participants)
    knows = checks.boolean("adversary.knows_declarations", section.knows_declarations)
    if not knows and section.upload != "honest":
        checks.fail(
            "adversary.upload",
            section.upload,
            "with hidden declarations (knows_declarations=False) it uploads honestly",
        )


@dataclasses.dataclass(frozen=True)
class Plan:
    """The adversary's static settings, read once from the config."""

    trigger: str  # accuracy | own_accuracy | round (gan_config.TRIGGERS)
    trigger_accuracy: float
    trigger_round: int
    uses_gan: bool  # the gan attack is configured: the generator trains
    snapshot_every: int  # keep every k-th global model (0: none)
    rounds: int
    figure_rounds: tuple[int, ...]
    figure_per_class: int
    soft_labels: bool  # attack.label_mode == soft
    loss_threshold: bool  # attack.attacks holds loss_threshold
    upload: str = "honest"
    attacks: tuple[str, ...] = ()  # attack.attacks
    ascent_rounds: tuple[int, ...] = ()  # rounds of the gradient_ascent upload (and watch)
    ascent_targets: str = "victim_classes"
    ascent_gamma: float = 1.0  # in global-update norms (uploads.py)
    adversary: int = 0  # its own index (fl.adversary)
    # Hidden declarations (label_recovery.py): it records the others' last-layer bias
    # change each round, removing its own update (it knows the protocol: the cohort size
    # and the clients' learning rate schedule).
    recovers_labels: bool = False
    clients_per_round: int = 0
    learning_rate: tuple[float, str, float] = (0.0, "constant", 0.0)  # base, schedule, final
    select_every: int = 0  # gan.select other than last: rounds between checks (0: last)
    select_patience: int = 0  # checks without a better score before a restore (0: never)
    own_eval_every: int = 1  # rounds between its own-accuracy measurements (and the last)
    collusion: collusion.CollusionPlan | None = None  # None: it does not collude

    def runs(self, attack_name: str) -> bool:
        return attack_name in self.attacks

    @property
    def watches(self) -> bool:
        """It measures the targets' losses around the ascent rounds (gradient_ascent)."""
        return self.runs("gradient_ascent") and bool(self.ascent_rounds)

    @classmethod
    def from_config(cls, config: Config) -> Plan:
        g, a = config.gan, config.attack
        return cls(
            trigger=g.trigger,
            trigger_accuracy=g.trigger_accuracy,
            trigger_round=g.trigger_round,
            uses_gan="gan" in a.attacks,
            snapshot_every=config.adversary.snapshot_every,
            rounds=config.fl.rounds,
            figure_rounds=tuple(g.figure_rounds),
            figure_per_class=g.figure_per_class,
            soft_labels=a.label_mode == "soft",
            loss_threshold="loss_threshold" in a.attacks,
            upload=config.adversary.upload,
            attacks=tuple(a.attacks),
            ascent_rounds=tuple(config.adversary.ascent_rounds),
            ascent_targets=config.adversary.ascent_targets,
            ascent_gamma=config.adversary.ascent_gamma,
            adversary=config.fl.adversary,
            recovers_labels=not config.adversary.knows_declarations,
            clients_per_round=engine_clients_per_round(config),
            learning_rate=(
                config.fl.learning_rate,
                config.fl.lr_schedule,
                config.fl.lr_final_fraction,
            ),
            select_every=g.select_every if g.select != "last" else 0,
            select_patience=g.select_patience if g.select != "last" else 0,
            own_eval_every=config.adversary.own_eval_every,
            collusion=collusion.CollusionPlan.from_config(config),
        )

    def learning_rate_at(self, t: int) -> float:
        base, schedule, final = self.learning_rate
        return federated.learning_rate_at(
            t, base=base, rounds=self.rounds, schedule=schedule, final_fraction=final
        )
