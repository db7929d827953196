"""Privacy-utility-attack: user-level DP-FedAvg over noise multipliers, on the demo.

    python experiments/sweep.py --config=configs/demo_dp.py --workdir=runs/dp
    python experiments/privacy_figure.py --workdir=runs/dp

Uniform FedAvg weights (bounded sensitivity), every update clipped to L2 norm 1, noise
multiplier z in (0, 0.01, 0.03, 0.1), seeds 0-2 (with N = 5 the noise on the mean
update is z x C / 5 per coordinate: from z = 0.5 on, 0.1 per weight a round, the model
diverges within 2 rounds); each run reports ``privacy.epsilon`` at
``fl.dp_delta`` (fedgan_jax/federation/privacy.py). Record-level DP-SGD inside each client instead:

    python experiments/sweep.py --config=configs/demo_dp.py --workdir=runs/dpsgd \
        --config.fl.clip_norm=0 --config.fl.dpsgd_clip=1 \
        --config.sweep.axes="(('fl.dpsgd_noise_multiplier', (0.0, 0.5, 1.0, 2.0)),)"

privacy_figure.py plots the main-task accuracy and each attack's TPR at 1% FPR against
epsilon, with the DP bound TPR <= e^epsilon x FPR + delta.
"""

from configs import demo


def get_config():
    c = demo.get_config()
    c.fl.weighting = "uniform"
    c.fl.clip_norm = 1.0
    c.gan.figure_rounds = ()
    c.attack.attacks = ("gan", "global_model", "oracle", "loss_threshold", "loss_calibrated")
    c.sweep.axes = (("fl.noise_multiplier", (0.0, 0.01, 0.03, 0.1)),)
    c.sweep.label_counts = (2,)
    c.sweep.seeds = (0, 1, 2)
    return c
