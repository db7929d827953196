"""Every membership attack of the library on the demo federation, the colluding server's
included (docs/colluding.md).

    python experiments/run.py --config=configs/demo_frontier.py --workdir=runs/frontier

Bundled MNIST, 5 participants, k=2, seed 0, 70 rounds (the demo reaches ~0.94 by round
60). The participant-side attacks: the label-based ``gan`` (the generator starts at the
announced 0.93) and ``global_model``, ``loss_threshold``, and the membership attacks
``loss_calibrated``, ``trajectory`` (a snapshot every 5 rounds) and ``gradient_ascent``
(with the honest upload, the passive loss drop around round 60: the control of
`configs/demo_membership.py`). The colluding server (``adversary.colludes``): it hands the
adversary every upload of the last 3 rounds, scored by ``source_inference`` and
``fedmia`` (the cosine statistic); each watched round scores the 5,000 candidates under
all 5 local models. The oracle (an upper bound no participant has) is left out.
Under secure aggregation: ``--config.fl.secure_aggregation=True``.

LiRA by the participant (``lira`` and ``lira_offline``, docs/lira.md): after round 70 it
trains ``attack.lira_shadows=4`` shadow federations of the same 70 rounds, in which every
candidate of the victim's classes is IN in two; S = 4 keeps the run on 2 cores (each
shadow costs about a federation), more shadows belong on an accelerator
(``--config.attack.lira_shadows=16``).

Cost without LiRA: 3 min 26 s wall from a fresh workdir (every program compiled in the
run) on 2 shared AMD EPYC cores under ``nice -n 5``, load average ~3.6 from other jobs:
161 s of federation (the watched rounds ~6 s each against ~2 s) and 28 s of attacks. The
whole config's time is in docs/frontier.md.
"""

from configs import demo


def get_config():
    c = demo.get_config()
    c.fl.rounds = 70
    c.gan.figure_rounds = ()
    c.adversary.snapshot_every = 5
    c.adversary.ascent_rounds = (60,)
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
        "lira",
        "lira_offline",
        "source_inference",
        "fedmia",
    )
    c.attack.lira_shadows = 4
    return c
