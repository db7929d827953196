"""Errors the engine raises on purpose, each with a message meant for a person.

The launchers catch `FedGanError` and print its message on one line (no traceback
unless `--verbose`), so every message names the field or file, the value, and what
is allowed.
"""


class FedGanError(Exception):
    """Base class of the engine's deliberate errors."""


class ConfigError(FedGanError, ValueError):
    """A config field (or a combination of fields) that cannot run."""


class DataError(FedGanError, ValueError):
    """A dataset that is missing, truncated, or not what its name says."""


class ModelError(FedGanError, TypeError):
    """A model that does not follow the contract the core relies on (`models.Classifier`)."""


class NonFiniteError(FedGanError, FloatingPointError):
    """A loss or a parameter became NaN or infinite; the run stops there."""


class WorkdirError(FedGanError):
    """A workdir that holds another experiment's checkpoint or results."""
