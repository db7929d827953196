"""Membership inference a participant can do, on the demo federation, per upload.

    python experiments/sweep.py --config=configs/demo_membership.py --workdir=runs/membership

Bundled MNIST, 5 participants, k=2, seed 0: 70 rounds (the demo reaches ~0.94 by round
60). One run per ``adversary.upload``: honest; gradient_ascent (its update plus one
loss-ascent step on every candidate of the victim's classes in round 60 that moves the
global model by one global update's norm; the attack watches round 61); fake_class (once
its generator starts, its local training also fits generated samples of the victim's
classes under its own first label). Every run scores the label-based attacks (gan,
global_model), the loss threshold, and the membership attacks: loss_calibrated,
trajectory (a snapshot every 5 rounds) and gradient_ascent (under honest and fake_class
uploads it is the passive control: the same loss drop, without the ascent step).
Three seeds: ``--config.sweep.seeds='(0,1,2)'``.
"""

from configs import demo


def get_config():
    c = demo.get_config()
    c.fl.rounds = 70
    c.gan.figure_rounds = ()
    c.adversary.snapshot_every = 5
    c.adversary.ascent_rounds = (60,)
    c.adversary.ascent_gamma = 1.0
    c.adversary.ascent_targets = "victim_classes"
    c.attack.attacks = (
        "gan",
        "global_model",
        "loss_threshold",
        "loss_calibrated",
        "trajectory",
        "gradient_ascent",
    )
    c.sweep.axes = (("adversary.upload", ("honest", "gradient_ascent", "fake_class")),)
    c.sweep.label_counts = (2,)
    c.sweep.seeds = (0,)
    return c
