"""The checks that span sections, the data and the machine: refused before any compute.

`config_lib.validate` checks each field by the module that uses it; two rules read several
fields at once and live here (`check_config`):

* **Fields a source ignores** are an error, not a warning: ``data.data_dir`` under
  ``data.source=bundled``, ``data.test_fraction`` (and ``data.split_seed`` when no subset is
  drawn) under tfds or files. Such a run would train on other data than the command says,
  which no later number reveals, and a warning scrolls away under the progress bar; the
  fix is one flag.
* **fl.client_fraction** trains ``round(fraction x N)`` clients a round (at least one).
  When that is not fraction x N a warning says what it trains; when it trains twice the
  fraction asked or more (0.1 of 5 participants: 1 client, 0.2), it is refused, naming
  the fraction that would say so.

Once the data is loaded and dealt, `check_run` refuses, before the workdir is claimed: a
dataset lacking some classes (every participant declares labels, every attack scores every
class), a DP-SGD batch larger than the largest client, and a config whose largest
allocations (client arrays, D_gen, the adversary's snapshots, the evaluation of the
candidate pool; `allocations`) exceed the memory available (``MemAvailable``, a cgroup's
limit, an accelerator's ``bytes_limit``), naming the largest and the sizes.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import jax
import numpy as np
from absl import logging

from fedgan_jax.core import checks
from fedgan_jax.core.errors import ConfigError, DataError
from fedgan_jax.data.datasets import Dataset
from fedgan_jax.driver import engine

SEED_LIMIT = 2**32  # jax.random.key keeps 32 bits: key(2**32) is key(0)

# Fields each source ignores, with the value that says "unset".
_IGNORED = {
    "bundled": {"data_dir": ""},
    "tfds": {"test_fraction": 0.2},
    "files": {"test_fraction": 0.2},
}
_warned: set[str] = set()


def check_seed(field: str, value) -> int:
    checks.integer(field, value, 0)
    if value >= SEED_LIMIT:
        checks.fail(field, value, "must be < 2**32: jax.random.key keeps 32 bits (2**32 is 0)")
    return value


def check_config(config) -> None:
    """The rules over several fields (see the module docstring); touches no data."""
    d = config.data
    ignored = dict(_IGNORED[d.source])
    if d.source != "bundled" and not d.max_train_per_class:  # no subset to seed
        ignored["split_seed"] = 0
    for field, unset in ignored.items():
        if d[field] != unset:
            checks.fail(
                f"data.{field}",
                d[field],
                f"data.source={d.source} ignores it; set it back to {unset!r} or use a "
                "source that reads it",
            )
    _check_client_fraction(config)


def _check_client_fraction(config) -> None:
    n, fraction = config.fl.num_participants, config.fl.client_fraction
    asked, trained = fraction * n, engine.clients_per_round(config)
    if math.isclose(asked, trained):
        return
    what = (
        f"fl.client_fraction={fraction} of fl.num_participants={n} asks for {asked:g} clients "
        f"a round, trains {trained} (a fraction of {trained / n:g})"
    )
    if trained >= 2 * asked:
        raise ConfigError(f"{what}; set fl.client_fraction={trained / n:g} to run that")
    if what not in _warned:
        _warned.add(what)
        logging.warning(what)


def check_run(config, dataset: Dataset, deals: dict, *, num_runs: int, param_bytes: int) -> None:
    """Refuses missing classes or too little memory; says when local batches are short."""
    _check_classes(config, dataset)
    most = max(int(np.bincount(owner[owner >= 0]).max()) for _, owner in deals.values())
    if config.fl.batch_size > most:
        _short_batches(config, most)
    capacity = engine.common_capacity(config, deals)
    items = allocations(config, dataset, capacity, num_runs, param_bytes)
    _check_memory(items)


def _short_batches(config, most: int) -> None:
    """A local batch wider than every client: each trains on one short batch of its records
    per epoch (as a DataLoader without drop_last), said once; DP-SGD refuses, its noise and
    accounting are for full batches."""
    b = config.fl.batch_size
    if config.fl.dpsgd_clip > 0:
        checks.fail(
            "fl.batch_size",
            b,
            f"larger than the largest client ({most} records) under DP-SGD "
            f"(fl.dpsgd_clip > 0), whose accounting needs full batches; use fl.batch_size <= "
            f"{most}",
        )
    what = (
        f"fl.batch_size={b} is larger than the largest client ({most} records): every client "
        f"trains on one short batch of all its records per local epoch"
    )
    if what not in _warned:
        _warned.add(what)
        logging.warning(what)


def _check_classes(config, dataset: Dataset) -> None:
    for split, y in (("training", dataset.train_y), ("test", dataset.test_y)):
        missing = sorted(set(range(dataset.num_classes)) - set(np.unique(y).tolist()))
        if missing:
            d = config.data
            where = f"data.source={d.source}" + (
                f", data.data_dir={d.data_dir!r}" if d.data_dir else ""
            )
            raise DataError(
                f"{where}: the {split} split lacks class(es) {', '.join(map(str, missing))} "
                f"of 0-{dataset.num_classes - 1}; every class must be present (participants "
                "declare labels, the attacks score every class)"
            )


class Allocation(NamedTuple):
    name: str
    detail: str
    bytes: int


def param_bytes(programs) -> int:
    """Bytes of one run's global model, from the server's init traced (nothing computed)."""
    keys = jax.random.split(jax.random.key(0), programs.num_runs)
    shapes = jax.eval_shape(programs.server.init, keys)
    total = sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(shapes))
    return total // programs.num_runs


def allocations(config, dataset: Dataset, capacity: int, num_runs: int, params: int) -> list:
    """The largest arrays a batch of `num_runs` runs holds, as `Allocation`s (bytes)."""
    shape, classes = tuple(dataset.image_shape), dataset.num_classes
    image = math.prod(shape) * 4  # float32
    runs = f"{num_runs} run(s)"
    n, b = config.fl.num_participants, config.fl.batch_size
    pool = len(dataset.train_y) + len(dataset.test_y)
    eb = config.eval.batch_size
    padded = -(-pool // eb) * eb
    attacks = tuple(config.attack.attacks)
    items = [
        Allocation(
            "client arrays",
            f"{runs} x {n} clients x {capacity} records (a multiple of fl.batch_size={b}) x "
            f"{shape} float32, on the host and on the device",
            2 * num_runs * n * capacity * (image + 4),
        ),
        Allocation(
            "evaluation",
            f"the {pool} candidate records padded to eval.batch_size={eb} x {shape} float32, "
            f"and {runs} x {len(attacks) + 1} sets of their logits",
            padded * image + num_runs * (len(attacks) + 1) * pool * classes * 4,
        ),
    ]
    if "gan" in attacks:
        spc = config.gan.samples_per_class
        items.append(
            Allocation(
                "D_gen",
                f"{runs} x gan.samples_per_class={spc} x {classes} classes x {shape} float32",
                num_runs * spc * classes * image,
            )
        )
    if config.adversary.snapshot_every:
        kept = config.fl.rounds // config.adversary.snapshot_every
        items.append(
            Allocation(
                "snapshots",
                f"{runs} x {kept} global models (fl.rounds={config.fl.rounds} / "
                f"adversary.snapshot_every={config.adversary.snapshot_every}) x {params} bytes",
                num_runs * kept * params,
            )
        )
    return items


def _check_memory(items: list[Allocation]) -> None:
    total = sum(item.bytes for item in items)
    available, where = available_memory()
    if total <= available:
        return
    big = max(items, key=lambda item: item.bytes)
    raise ConfigError(
        f"the run needs about {_size(total)} of memory, more than the {_size(available)} "
        f"available ({where}); the largest item is {big.name}: {big.detail} = {_size(big.bytes)}"
    )


def available_memory() -> tuple[int, str]:
    """Bytes free for a run, and where that figure comes from."""
    found = [(_meminfo(), "MemAvailable in /proc/meminfo"), (_cgroup_room(), "the cgroup limit")]
    if jax.default_backend() != "cpu":
        stats = jax.devices()[0].memory_stats() or {}
        room = stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0)
        found.append((room if room > 0 else None, f"{jax.default_backend()} device memory"))
    found = [(b, w) for b, w in found if b is not None]
    return min(found) if found else (1 << 62, "unknown")


def _meminfo() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _cgroup_room() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else int(limit) - used


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.1f} PiB"
