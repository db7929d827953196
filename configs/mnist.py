"""The paper's MNIST setting (Sec. V-B): 5 participants, 400 rounds, E=30, lr 0.01, TFDS.

FedAvg as the paper's Eq. 1 writes it: the plain mean of the updates (uniform weights).
"""

from configs import default


def get_config():
    c = default.get_config()
    c.data.dataset = "mnist"
    c.data.source = "tfds"
    c.fl.weighting = "uniform"
    return c
