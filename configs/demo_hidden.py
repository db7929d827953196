"""Does hiding the declared labels (the paper's Sec. VI defense) stop the attack?

    python experiments/sweep.py --config=configs/demo_hidden.py --workdir=runs/hidden

The demo federation with partial participation (3 of 5 participants a round, so
co-occurrence can separate them), seeds 0-2: the adversary told the declarations, and
the adversary that recovers them from the global models (fedgan_jax/adversary/label_recovery.py)
and attacks with the recovered victim set. ``label_recovery`` in each run's
results.json scores the recovery.
"""

from configs import demo


def get_config():
    c = demo.get_config()
    c.fl.client_fraction = 0.6
    c.gan.figure_rounds = ()
    c.attack.attacks = ("gan", "global_model", "oracle", "loss_threshold", "loss_calibrated")
    c.sweep.axes = (("adversary.knows_declarations", (True, False)),)
    c.sweep.label_counts = (2,)
    c.sweep.seeds = (0, 1, 2)
    return c
