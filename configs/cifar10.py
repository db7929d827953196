"""The paper's CIFAR-10 setting (Sec. V-B): 5 participants, 400 rounds, E=60, lr 1e-4, TFDS.

FedAvg as the paper's Eq. 1 writes it: the plain mean of the updates (uniform weights).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.dataset = "cifar10"
    c.data.source = "tfds"
    c.fl.local_epochs = 60
    c.fl.learning_rate = 1e-4
    c.fl.weighting = "uniform"
    return c
