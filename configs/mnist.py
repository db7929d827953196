"""The paper's MNIST setting (Sec. V-B): 5 participants, 400 rounds, E=30, lr 0.01, TFDS."""

from configs import default


def get_config():
    c = default.get_config()
    c.data.dataset = "mnist"
    c.data.source = "tfds"
    return c
