"""The workdir before a run claims it: usable or not, and one launch at a time.

`check_usable(workdir)` refuses a workdir that is a file or sits where nothing can be
written, and creates nothing: the drivers call it with the other checks, before anything
is claimed. `hold(workdir)` then creates the folder and holds its lock for the run.

The lock is ``<workdir>/.lock``, locked with ``flock`` and holding a record of its holder
(pid, host, start time, command). A second launch finds the lock taken and stops with
one line naming the holder. Why ``flock`` rather than a pid file alone: the kernel drops
the lock when its holder dies, by kill -9 too, so a stale lock is exactly a lock file that
nobody holds; no pid is guessed alive or dead (pids are reused, and a container's pids
mean nothing on the next host of a shared disk). A stale file is taken over in place, with
a warning naming its old holder. On release the file is removed; a launch that opened it
just before checks, once it holds the lock, that the path is still its file, and starts
over if not, so two launches can never both hold a workdir.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterator

from absl import logging

from fedgan_jax.core.errors import WorkdirError

LOCK_FILE = ".lock"


def check_usable(workdir: str) -> None:
    """Raises `WorkdirError` when `workdir` is a file or cannot be written; creates nothing.

    A workdir that does not exist yet is judged by the nearest folder above it that does.
    Writability is tried, not inferred from mode bits: an unnamed temporary file is
    created there and vanishes on close (a read-only mount refuses it even to root).
    """
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"workdir {workdir} is a file, not a folder: choose another --workdir")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise WorkdirError(f"workdir {workdir}: {existing} is a file, so no folder can be made")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        where = "" if existing == path else f" (in {existing})"
        raise WorkdirError(
            f"workdir {workdir} is not writable{where}: {e.strerror}; choose another --workdir"
        ) from None


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
    """Creates `workdir` and holds its lock until the block ends (an error included)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    fd = _acquire(workdir, path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # a workdir gone read-only keeps its file
            os.unlink(path)
        os.close(fd)  # the lock goes with the descriptor


def _acquire(workdir: str, path: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise WorkdirError(
                f"workdir {workdir} is busy: {_describe(holder)}; wait for that run to end "
                "or stop it"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder released (and removed) it meanwhile: lock the new one
    stale = _read(fd)
    if stale:
        logging.warning(
            "workdir %s: taking over a stale lock (%s; no process holds it any more)",
            workdir,
            _describe(stale),
        )
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return fd


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another launch holds it (its record is not written yet)"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} has held it since "
        f"{holder.get('started')} ({holder.get('command')})"
    )
