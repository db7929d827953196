"""``data.source=tfds``: a named dataset from TFDS, and every TFDS failure said in one line.

`load` reads both splits with `tensorflow_datasets.data_source` (array_record, random
access; reading a prepared copy needs no TensorFlow). With ``download=True`` TFDS prepares
the dataset first (`DatasetBuilder.download_and_prepare`, which needs TensorFlow): it
takes each official file from its *manual dir* ``<data_dir>/downloads/manual/`` when the
file is there under its official name (``train-images-idx3-ubyte.gz`` ...) and its size
and checksum are TFDS's registered ones, and downloads the others. So an offline machine
prepares MNIST from the four official files copied into that folder.

`describe_failure` turns what TFDS raised into one line that says what failed: a missing
Python module, no network (and which files the manual dir lacks), a served file that is
not the official one, no prepared copy while ``download=False``; anything else keeps
TFDS's own first line.
"""

from __future__ import annotations

import os

import numpy as np

from fedgan_jax.core.errors import DataError

# Exception classes (by name, over the whole MRO) that mean the network is unreachable:
# requests' and urllib3's connection errors, socket's DNS error, urllib's URLError.
_NETWORK_ERRORS = {"ConnectionError", "Timeout", "MaxRetryError", "URLError", "gaierror"}


def load(tfds_name: str, data_dir: str, download: bool):
    """``(train_x, train_y, test_x, test_y)`` as uint8 NHWC images and int64 labels."""
    try:
        import tensorflow_datasets as tfds  # heavy import, only for this source
    except ImportError as e:
        raise DataError(describe_failure(e, tfds_name, "", data_dir, download)) from e
    out = []
    for split in ("train", "test"):
        try:
            source = tfds.data_source(
                tfds_name,
                split=split,
                data_dir=data_dir or None,
                download=download,
                # TFDS picks array_record (random access) by itself only without a
                # data_dir; with one it would prepare tfrecord, which it cannot read here.
                builder_kwargs={"file_format": "array_record"},
            )
            records = _read_all(source)
        except Exception as e:  # TFDS raises many types; describe_failure sorts them
            raise DataError(describe_failure(e, tfds_name, split, data_dir, download)) from e
        if not records:
            raise DataError(f"tfds {tfds_name}/{split} is empty")
        images = np.stack([np.asarray(r["image"]) for r in records])
        labels = np.asarray([int(r["label"]) for r in records], np.int64)
        out += [images, labels]
    return tuple(out)


def _read_all(source) -> list:
    """Every record of `source`. Over array_record's reader (what `load` opens) in one
    batched call (`__getitems__`: each shard's records at once, about 3x faster than one
    ``source[i]`` at a time); over anything else record by record: a test's stand-in, or
    TFDS's `mock_data`, which swaps that reader for a mock whose `__getitems__` fails
    (TFDS 4.9.10)."""
    from array_record.python import array_record_data_source as reader

    keys = list(range(len(source)))
    if type(getattr(source, "data_source", None)) is reader.ArrayRecordDataSource:
        return list(source.__getitems__(keys))
    return [source[i] for i in keys]


def tfds_root(data_dir: str) -> str:
    """The TFDS data dir in use: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    root = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.expanduser(root)


def manual_dir(data_dir: str) -> str:
    """Where TFDS looks for files served by hand (its default ``DownloadConfig.manual_dir``)."""
    return os.path.join(tfds_root(data_dir), "downloads", "manual")


def official_files(tfds_name: str) -> list[str]:
    """The file names TFDS downloads for `tfds_name` (its registered checksums); [] if
    TFDS cannot say."""
    try:
        import tensorflow_datasets as tfds

        infos = tfds.builder_cls(tfds_name).url_infos or {}
        return sorted(info.filename for info in infos.values() if info.filename)
    except Exception:  # only a hint for the message: never mask the real failure
        return []


def _chain(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while e is not None and all(e is not s for s in seen):
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".strip()


def _is_prepared(tfds_name: str, data_dir: str) -> bool | None:
    try:
        import tensorflow_datasets as tfds

        return tfds.builder(tfds_name, data_dir=data_dir or None).is_prepared()
    except Exception:  # only a hint for the message
        return None


def describe_failure(
    e: BaseException, tfds_name: str, split: str, data_dir: str, download: bool
) -> str:
    """One line: what failed when TFDS was asked for `tfds_name` (see the module doc)."""
    what = f"{tfds_name}/{split}" if split else tfds_name
    head = f"tfds could not provide {what} (data_dir={data_dir or 'default'}, download={download})"
    said = f"(TFDS: {_first_line(e)})"
    chain = _chain(e)
    for c in chain:
        if isinstance(c, ModuleNotFoundError) and c.name:
            use = "to prepare a dataset" if c.name.split(".")[0] == "tensorflow" else ""
            return (
                f"{head}: Python module {c.name!r} is missing{' ' + use if use else ''}; "
                "install the pinned stack: pip install -c constraints.txt -e ."
            )
    for c in chain:
        if type(c).__name__ == "NonMatchingChecksumError":
            return (
                f"{head}: a file served in {manual_dir(data_dir)} is not the official one "
                f"(its size or checksum differs from TFDS's registered one) {said}"
            )
    for c in chain:
        if _NETWORK_ERRORS & {k.__name__ for k in type(c).__mro__}:
            return f"{head}: no network, and {_missing_files(tfds_name, data_dir)} {said}"
    if "FileFormat.TFRECORD" in str(e):
        return (
            f"{head}: the copy in {tfds_root(data_dir)} is prepared as tfrecord, which has "
            f"no random access; rebuild it: tfds build {tfds_name} --file_format=array_record"
        )
    if not download and _is_prepared(tfds_name, data_dir) is False:
        return (
            f"{head}: no prepared copy in {tfds_root(data_dir)} and data.download=False; "
            f"set data.download=True to prepare it {said}"
        )
    return f"{head}: {_first_line(e)}"


def _missing_files(tfds_name: str, data_dir: str) -> str:
    folder = manual_dir(data_dir)
    names = official_files(tfds_name)
    missing = [n for n in names if not os.path.exists(os.path.join(folder, n))]
    if not names:
        return f"the official files are not in {folder}"
    if not missing:
        return f"{folder} holds every official file, yet TFDS went online"
    return f"{folder} lacks the official {', '.join(missing)} (copy them there)"
