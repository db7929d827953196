"""Every membership attack a participant or a colluding server runs, on full-size
Fashion-MNIST (`configs/fashion_mnist.py`'s federation: 60,000 + 10,000 images, 5
participants, k=2, 400 rounds of 20 local minibatches).

    python experiments/run.py --config=configs/fashion_frontier.py --workdir=runs/fashion_frontier

Beside the label-based ``gan`` and ``global_model``: ``loss_threshold``,
``loss_calibrated``, ``trajectory`` (a snapshot every 20 rounds), ``gradient_ascent`` (the
passive loss drop around round 390, with the honest upload) and the colluding server's
``source_inference`` and ``fedmia`` on the uploads of the last 3 rounds. A round's 20
minibatches of 64 touch about a tenth of a participant's 12,000 records, so a watched
upload carries only those records' gradients.

LiRA (``lira``, ``lira_offline``) is left out: each shadow federation costs a federation
(~23 min on 2 CPU cores), so S shadows belong on an accelerator:
``--config.attack.attacks='(..., "lira", "lira_offline")' --config.attack.lira_shadows=16``
(`experiments/device_sweeps.sh fashion_frontier`).
"""

from configs import fashion_mnist


def get_config():
    c = fashion_mnist.get_config()
    c.adversary.snapshot_every = 20
    c.adversary.ascent_rounds = (390,)
    c.adversary.colludes = True
    c.adversary.count = 1
    c.adversary.collude_rounds = 3
    c.attack.attacks = (
        "gan",
        "global_model",
        "loss_threshold",
        "loss_calibrated",
        "trajectory",
        "gradient_ascent",
        "source_inference",
        "fedmia",
    )
    return c
