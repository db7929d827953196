"""Checkpoint and resume with orbax-checkpoint, and the guard against mixing experiments.

A checkpoint holds the whole `state.RunState` a batch of runs needs to go on, as it is:
the server's global params and round, the adversary's state (latest model, snapshots,
generator and critic with their optax states, figure samples, its own measurements) and
the experimenter's log. PRNG keys are not state: every key is derived from the run's
seed, the stream and the round (`state.STREAMS`), so a resumed run draws exactly the
numbers an uninterrupted one would.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a
kill during a save leaves the previous checkpoint usable. Saves are synchronous: a round
is not reported done before its checkpoint is. A save that fails is an `OSError` whatever
orbax raised (the driver names the workdir and the round a rerun resumes from).
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from fedgan_jax.core import io
from fedgan_jax.core.errors import WorkdirError
from fedgan_jax.core.types import Config
from fedgan_jax.driver import config_lib
from fedgan_jax.driver.state import RunState

# Config sections that do not change a run's numbers: resuming with other values is allowed.
RESUMABLE_FIELDS = ("checkpoint", "sweep")
CONFIG_FILE = "config.json"


class Checkpointer:
    """Saves every `every` rounds (and the last round) under `directory`; keeps `keep`."""

    def __init__(
        self, directory: str, *, every: int, keep: int | None, last_round: int, writer: bool = True
    ):
        self.every = every if writer else 0  # a reader (not process 0) restores, never saves
        self.last_round = last_round
        options, create = {}, writer
        if jax.process_count() > 1:  # orbax coordinates this process alone, not all of them
            if writer:  # orbax does not create the folder for a subset of processes
                os.makedirs(directory, exist_ok=True)
            create, me = False, jax.process_index()
            options["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"p{me}"
            )
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=create, enable_async_checkpointing=False, **options
            ),
        )
        self.saved = self.manager.latest_step() or 0  # the round a rerun resumes from

    def latest_round(self) -> int | None:
        return self.manager.latest_step()

    def resumable_round(self) -> int:
        """The round a rerun resumes from, read from disk: a Ctrl-C can land after a save
        is complete there but before `maybe_save` has returned (and set `saved`)."""
        try:
            self.manager.reload()
        except Exception:  # noqa: BLE001 (a workdir that refuses reads: what we know)
            return self.saved
        return self.manager.latest_step() or 0

    def maybe_save(self, state: RunState) -> bool:
        t = state.round
        if not self.every or (t % self.every and t != self.last_round):
            return False
        if self.manager.latest_step() == t:  # already saved (e.g. resumed at the end)
            return False
        try:
            self.manager.save(t, args=ocp.args.StandardSave(_host(state)), force=True)
            self.manager.wait_until_finished()
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 (tensorstore reports a failed write as any type)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise OSError(f"saving the checkpoint of round {t} failed: {reason}") from e
        self.saved = t
        return True

    def rounds(self) -> list[int]:
        """The rounds of the checkpoints on disk, in order."""
        return sorted(self.manager.all_steps())

    def restore(self, target: RunState, step: int | None = None) -> RunState:
        """The checkpoint of round `step` (None: the latest), shaped like `target` (a fresh
        initial state)."""
        step = self.manager.latest_step() if step is None else step
        if jax.process_count() == 1:
            return self.manager.restore(step, args=ocp.args.StandardRestore(target))
        restored = self.manager.restore(step, args=ocp.args.StandardRestore(_host(target)))
        return jax.tree.map(jax.numpy.asarray, restored)

    def close(self) -> None:
        self.manager.close()


def _host(state: RunState) -> RunState:
    """Several processes: orbax saves no process-local device array, so host copies."""
    return state if jax.process_count() == 1 else jax.device_get(state)


# What 'auto' settings resolved to; a resume must resolve them the same way (numerics).
RESOLVED_FIELDS = ("conv_impl", "client_chunk")


def claim_workdir(
    workdir: str, config: Config, *, resolved: dict | None = None, ignore=RESUMABLE_FIELDS
) -> bool:
    """Writes the config into `workdir`, or checks it against the one already there.

    `resolved` (the engine's conv lowering, client chunking and backend) is recorded too:
    a resume that would resolve 'auto' differently (another backend) is refused as well.
    Returns True when the workdir already belonged to this config (resume). Raises
    `WorkdirError` when it belongs to a different one: results are never mixed.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    mine = config_lib.fingerprint(config, ignore)
    if os.path.exists(path):
        saved = io.read_json(path)
        if saved.get("fingerprint") != mine:
            theirs = saved.get("config", {})
            diff = _diff(config_lib.to_dict(config), theirs, ignore)
            raise WorkdirError(
                f"{workdir} holds another experiment (fields that differ: {diff or 'unknown'}); "
                "use a new --workdir or delete that one"
            )
        before = saved.get("resolved") or {}
        changed = [
            f"{k}: {before[k]!r} there, {resolved[k]!r} here"
            for k in RESOLVED_FIELDS
            if resolved and k in before and before[k] != resolved[k]
        ]
        if changed:
            raise WorkdirError(
                f"{workdir} was run with other numerics ({'; '.join(changed)}; backend "
                f"{before.get('backend')!r} there): set model.conv_impl and fl.client_chunk "
                "to the values there to resume, or use a new --workdir"
            )
        return True
    os.makedirs(workdir, exist_ok=True)
    record = {"fingerprint": mine, "config": config_lib.to_dict(config), "resolved": resolved}
    io.write_json(path, record)
    return False


def _diff(a: dict, b: dict, ignore, prefix="") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        if name in ignore:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, ignore, name + ".")
        elif va != vb:
            out.append(f"{name}: {vb!r} there, {va!r} here")
    return out
