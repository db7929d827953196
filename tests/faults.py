"""experiments/run.py with a fault injected at a checkpoint save (the robustness tests').

    python tests/faults.py FAULT ROUND -- <experiments/run.py flags>

FAULT, at the checkpoint save of round ROUND (orbax's own code paths, patched in this
process only; the package is not touched):

* ``kill``: SIGKILL to itself after orbax has written the round's temporary folder, just
  before it renames it into place (kill -9 mid-write: no cleanup of any kind);
* ``enospc``: orbax's write of the commit marker, once the arrays are written, fails
  with ENOSPC (disk full);
* ``readonly``: from that save on (ROUND 0: from the start), every file or folder created
  in the workdir fails with EROFS (the workdir's file system remounted read-only).
"""

import builtins
import errno
import os
import runpy
import signal
import sys

import orbax.checkpoint as ocp
from orbax.checkpoint._src.path import async_path, atomicity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_step = {"now": None}


def _refuse(code: int, path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def install(fault: str, at: int, workdir: str) -> None:
    save = ocp.CheckpointManager.save

    def tracked_save(self, step, *args, **kwargs):
        _step["now"] = step
        return save(self, step, *args, **kwargs)

    ocp.CheckpointManager.save = tracked_save
    if fault == "kill":
        rename = async_path.rename

        async def killing_rename(src, dst):
            if _step["now"] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return await rename(src, dst)

        async_path.rename = killing_rename
    elif fault == "enospc":
        write_text = async_path.write_text

        async def full_write_text(path, text):
            if _step["now"] == at and str(path).endswith(atomicity.COMMIT_SUCCESS_FILE):
                raise _refuse(errno.ENOSPC, path)
            return await write_text(path, text)

        async_path.write_text = full_write_text
    elif fault == "readonly":
        _read_only_from(at, os.path.abspath(workdir))
    else:
        raise SystemExit(f"unknown fault {fault!r}")


def _read_only_from(at: int, workdir: str) -> None:
    def refused(path) -> bool:
        path = os.path.abspath(os.fsdecode(path))
        inside = path == workdir or path.startswith(workdir + os.sep)
        return inside and (_step["now"] or 0) >= at

    mkdir, os_open, open_ = os.mkdir, os.open, builtins.open

    def ro_mkdir(path, *args, **kwargs):
        if refused(path):
            raise _refuse(errno.EROFS, path)
        return mkdir(path, *args, **kwargs)

    def ro_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refused(path):
            raise _refuse(errno.EROFS, path)
        return os_open(path, flags, *args, **kwargs)

    def ro_open(file, mode="r", *args, **kwargs):
        if isinstance(file, str | bytes | os.PathLike) and set(mode) & set("wax+"):
            if refused(file):
                raise _refuse(errno.EROFS, file)
        return open_(file, mode, *args, **kwargs)

    os.mkdir, os.open, builtins.open = ro_mkdir, ro_os_open, ro_open


def main() -> None:
    fault, at = sys.argv[1], int(sys.argv[2])
    args = sys.argv[sys.argv.index("--") + 1 :]
    workdir = next(a.split("=", 1)[1] for a in args if a.startswith("--workdir="))
    install(fault, at, workdir)
    sys.argv = [os.path.join(ROOT, "experiments", "run.py"), *args]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
