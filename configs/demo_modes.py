"""The demo federation with every generator mode, compared in one launch.

    python experiments/sweep.py --config=configs/demo_modes.py --workdir=runs/modes

Same federation as `demo.py` (bundled MNIST, k=2, seed 0); one run per `gan.mode`. Every
mode gets the same attack-classifier recipe, the one data-free distillation uses: soft
labels (f's probabilities) and 500 generated samples per class. The paper-faithful
recipe (hard labels, 200 per class) is what `demo.py` runs.
Longer budget: add ``--config.fl.rounds=300 --config.gan.steps_per_round=20``.
"""

from configs import demo


def get_config():
    c = demo.get_config()
    c.sweep.gan_modes = ("paper", "dafl", "adversarial", "prior")
    c.sweep.label_counts = (2,)
    c.sweep.seeds = (0,)
    c.attack.label_mode = "soft"
    c.gan.samples_per_class = 500
    return c
