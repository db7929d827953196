"""The offline demo: the bundled 5k MNIST, budgets that finish in a few minutes on 2 cores.

5 participants (paper), 80 rounds of 1 local epoch at lr 0.1 (the paper's E=30 at lr 0.01
over 400 rounds is `configs/mnist.py`). The generator starts when the main-task accuracy
reaches the paper's 0.93.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.source = "bundled"
    c.fl.rounds = 80
    c.fl.local_epochs = 1
    c.fl.learning_rate = 0.1
    c.gan.steps_per_round = 20
    c.gan.figure_rounds = (60,)
    c.checkpoint.every = 10
    return c
