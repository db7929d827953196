"""Errors the engine raises on purpose, each with a message meant for a person.

The launchers catch `FedGanError` and print its message on one line (no traceback
unless `--verbose`), so every message names the field or file, the value, and what
is allowed. The process then exits with the error's `exit_status`: 2 for what the
command asked (a config, a data folder, a workdir; a non-finite loss too, which a lower
learning rate fixes), 1 for a workdir that stopped taking writes mid-run (disk full,
read-only), 130 after Ctrl-C (the shell's convention, 128 + SIGINT).
"""


class FedGanError(Exception):
    """Base class of the engine's deliberate errors."""

    exit_status = 2


class ConfigError(FedGanError, ValueError):
    """A config field (or a combination of fields) that cannot run."""


class DataError(FedGanError, ValueError):
    """A dataset that is missing, truncated, or not what its name says."""


class ModelError(FedGanError, TypeError):
    """A model that does not follow the contract the core relies on (`models.Classifier`)."""


class NonFiniteError(FedGanError, FloatingPointError):
    """A loss or a parameter became NaN or infinite; the run stops there."""


class WorkdirError(FedGanError):
    """A workdir that cannot be used: another experiment's, busy, a file, not writable."""


class StorageError(FedGanError, OSError):
    """The workdir stopped taking writes mid-run (disk full, read-only); says how to resume."""

    exit_status = 1


class Interrupted(FedGanError):
    """Ctrl-C (SIGINT) during a run; the message says from which round a rerun resumes."""

    exit_status = 130
