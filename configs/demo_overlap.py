"""The paper's disjoint labels against overlapping ones, on the demo federation.

    python experiments/sweep.py --config=configs/demo_overlap.py --workdir=runs/overlap

Bundled MNIST, 5 participants, k=2, seeds 0-2: one run per ``fl.partition``: disjoint
(the paper), shared (each class held by 2 participants, the victim's 2 classes each shared
with one other) and dirichlet (class proportions ~ Dir(0.5), Hsu et al. 2019). Under
overlap the victim's declared labels are every class it holds, so the label-based attacks
mark the others' records of those classes IN too. Dirichlet concentration as an axis:
``--config.fl.partition=dirichlet --config.sweep.axes="(('fl.dirichlet_alpha', (0.1,
0.5, 1.0, 10.0)),)"``.
"""

from configs import demo


def get_config():
    c = demo.get_config()
    c.gan.figure_rounds = ()
    c.attack.attacks = ("gan", "global_model", "oracle", "loss_threshold", "loss_calibrated")
    c.sweep.axes = (("fl.partition", ("disjoint", "shared", "dirichlet")),)
    c.sweep.label_counts = (2,)
    c.sweep.seeds = (0, 1, 2)
    return c
