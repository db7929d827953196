"""Well-separated synthetic digits: class c is a bright 7x7 block in cell c of a 4x4 grid.

A federation learns them in a few rounds and a generator can find them, so tests built
on them know the right answer: the global model labels every record correctly, the
generator's samples of class c light up block c. Not collected by pytest (no ``test_``).
"""

from __future__ import annotations

import os

import numpy as np

from tests.test_data import (
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    idx_bytes,
    put,
)


def block_digits(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [10 * per_class, 28, 28] and labels 0..9 repeating: dark noise
    (0..59) everywhere, bright noise (190..255) in the class's block."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(10), per_class).astype(np.uint8)
    x = rng.integers(0, 60, size=(len(y), 28, 28)).astype(np.uint8)
    for i, c in enumerate(y):
        r, col = divmod(int(c), 4)
        x[i, 7 * r : 7 * r + 7, 7 * col : 7 * col + 7] = rng.integers(190, 256, (7, 7))
    return x, y


def normalized(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`block_digits` as the loaders return them: float32 NHWC in [-1, 1], int32 labels."""
    x, y = block_digits(per_class, seed)
    return (x[..., None] / 127.5 - 1.0).astype(np.float32), y.astype(np.int32)


def write_idx(folder: str, *, train_per_class: int, test_per_class: int, seed: int) -> str:
    """Writes MNIST IDX files of block digits into `folder` (for ``data.source=files``)."""
    os.makedirs(folder, exist_ok=True)
    train = block_digits(train_per_class, seed)
    test = block_digits(test_per_class, seed + 1)
    for (x, y), images, labels in (
        (train, TRAIN_IMAGES, TRAIN_LABELS),
        (test, TEST_IMAGES, TEST_LABELS),
    ):
        put(folder, images, idx_bytes(x))
        put(folder, labels, idx_bytes(y))
    return folder
