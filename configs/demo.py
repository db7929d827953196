"""The offline demo: the bundled 5k MNIST, budgets that finish in a few minutes on 2 cores.

5 participants (paper), 150 rounds of 1 local epoch at lr 0.05 (the paper's E=30 at lr 0.01
over 400 rounds is `configs/mnist.py`; with every label held by one participant, larger
local steps make FedAvg drift, see docs/results.md). The generator starts when the main-task
accuracy reaches the paper's 0.93 and takes 10 steps per round.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "bundled"
    c.fl.rounds = 150
    c.fl.local_epochs = 1
    c.fl.learning_rate = 0.05
    c.gan.steps_per_round = 10
    c.gan.figure_rounds = (100,)
    c.checkpoint.every = 10
    return c
