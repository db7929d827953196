"""``data.source=tfds`` for real: TFDS's `download_and_prepare`, offline, from files served
in its manual dir, then read back through `load_dataset` (`tfds.data_source`).

No `tfds.testing.mock_data`: TFDS's own MNIST builder takes the four IDX files from
``<data_dir>/downloads/manual/``, encodes every image, writes array_record shards, and the
loader reads them. TFDS checks each served file against the official size and checksum;
the files here are block digits (`tests/synthetic.py`) at MNIST's full size (the builder
reads exactly 60,000 + 10,000 images), so the happy-path test registers *their* checksums
in place of the official ones (`_serve`). Without that, a served file is refused, which is
the mismatch test. No test reaches the network: the offline one points the proxies at a
closed loopback port.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections import Counter

import numpy as np
import pytest

from fedgan_jax.core.errors import DataError
from fedgan_jax.data import datasets as data
from fedgan_jax.data import tfds_source
from tests.synthetic import block_digits
from tests.test_data import idx_bytes

tfds = pytest.importorskip("tensorflow_datasets")

NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def _write_mnist(folder: str, train_per_class: int = 6000, test_per_class: int = 1000) -> dict:
    """MNIST's four official files (gzip IDX) of block digits; returns the arrays."""
    os.makedirs(folder, exist_ok=True)
    arrays = {"train": block_digits(train_per_class, 0), "test": block_digits(test_per_class, 1)}
    for split, (x, y) in arrays.items():
        for kind, payload in (("images", x), ("labels", y)):
            with open(os.path.join(folder, NAMES[f"{split}_{kind}"]), "wb") as f:
                f.write(gzip.compress(idx_bytes(payload), compresslevel=1))
    return arrays


def _serve(monkeypatch, builder_name: str, folder: str) -> None:
    """Registers the checksums of the files in `folder` as the official ones."""
    compute = tfds.download.checksums.compute_url_info
    builder = tfds.builder_cls(builder_name)
    infos = {}
    for url, info in builder.url_infos.items():
        path = os.path.join(folder, info.filename)
        if os.path.exists(path):
            infos[url] = dataclasses.replace(compute(tfds.core.Path(path)), filename=info.filename)
        else:
            infos[url] = info
    monkeypatch.setattr(builder, "url_infos", infos)


def _multiset(x: np.ndarray, y: np.ndarray) -> Counter:
    return Counter((int(label), img.tobytes()) for img, label in zip(x, y, strict=True))


def test_tfds_prepares_mnist_offline_from_its_manual_dir(tmp_path, monkeypatch):
    root = str(tmp_path / "tfds")
    arrays = _write_mnist(tfds_source.manual_dir(root))
    _serve(monkeypatch, "mnist", tfds_source.manual_dir(root))
    ds = data.load_dataset("mnist", "tfds", root, download=True)
    assert ds.train_x.shape == (60_000, 28, 28, 1) and ds.test_x.shape == (10_000, 28, 28, 1)
    # TFDS reorders the records; the (label, image) multiset is what was served.
    for split, (x, y) in arrays.items():
        got_x = getattr(ds, f"{split}_x")
        pixels = np.round((got_x[..., 0] + 1.0) * 127.5).astype(np.uint8)
        assert _multiset(pixels, getattr(ds, f"{split}_y")) == _multiset(x, y)
    # Prepared once: the same folder now reads without download (nor the manual files).
    for name in NAMES.values():
        os.remove(os.path.join(tfds_source.manual_dir(root), name))
    again = data.load_dataset("mnist", "tfds", root, download=False)
    np.testing.assert_array_equal(again.test_y, ds.test_y)


def test_a_served_file_that_is_not_official_is_named(tmp_path):
    root = str(tmp_path / "tfds")
    _write_mnist(tfds_source.manual_dir(root), train_per_class=2, test_per_class=1)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", "tfds", root, download=True)
    message = str(excinfo.value)
    assert "\n" not in message
    assert f"a file served in {tfds_source.manual_dir(root)} is not the official one" in message
    assert "NonMatchingChecksumError" in message


def test_offline_names_the_files_the_manual_dir_lacks(tmp_path, monkeypatch):
    """No network (proxies on a closed loopback port, TFDS's retries off) and half the
    files served: the line names the missing ones and where they go."""
    root = str(tmp_path / "tfds")
    manual = tfds_source.manual_dir(root)
    _write_mnist(manual, train_per_class=2, test_per_class=1)
    os.remove(os.path.join(manual, NAMES["train_images"]))
    os.remove(os.path.join(manual, NAMES["test_labels"]))
    _serve(monkeypatch, "mnist", manual)
    from tensorflow_datasets.core.download import downloader

    monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", "tfds", root, download=True)
    message = str(excinfo.value)
    assert "\n" not in message
    assert (
        f"no network, and {manual} lacks the official t10k-labels-idx1-ubyte.gz, "
        "train-images-idx3-ubyte.gz (copy them there)"
    ) in message


def test_not_prepared_without_download_says_so(tmp_path):
    root = str(tmp_path / "empty")
    os.makedirs(root)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("fashion_mnist", "tfds", root, download=False)
    message = str(excinfo.value)
    assert "\n" not in message
    assert f"no prepared copy in {root} and data.download=False" in message


def test_a_missing_module_is_named(monkeypatch):
    """The failure the paper configs met: TFDS's lazy import of a module not installed."""

    def missing(*args, **kwargs):
        raise ModuleNotFoundError(
            "No module named 'importlib_resources'", name="importlib_resources"
        )

    monkeypatch.setattr(tfds, "data_source", missing)
    with pytest.raises(DataError) as excinfo:
        data.load_dataset("mnist", "tfds", download=True)
    assert str(excinfo.value).endswith(
        "Python module 'importlib_resources' is missing; install the pinned stack: "
        "pip install -c constraints.txt -e ."
    )


def test_the_modules_tfds_needs_to_prepare_are_installed():
    """Declared in setup.cfg: what TFDS imports lazily on the prepare path."""
    import importlib_resources  # noqa: F401  (TFDS's builder resolves its code path with it)
    import tensorflow  # noqa: F401  (TFDS's MNIST / CIFAR-10 builders read and encode with it)

    assert tfds.builder_cls("mnist").code_path.name == "mnist.py"


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"),
    reason="no Debian dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
)
def test_debian_fashion_mnist_files_load():
    """The real Fashion-MNIST files Debian ships, through data.source=files."""
    ds = data.load_dataset("fashion_mnist", "files", "/usr/share/datasets/fashion-mnist")
    assert ds.train_x.shape == (60_000, 28, 28, 1) and ds.test_x.shape == (10_000, 28, 28, 1)
    assert np.bincount(ds.train_y).tolist() == [6000] * 10
    assert np.bincount(ds.test_y).tolist() == [1000] * 10
