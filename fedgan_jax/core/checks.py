"""Field checkers: one line per problem, naming the field, its value and what is allowed.

Each config field is checked once, by the module that owns it (`data.check_config`,
`partition.check_config`, `federated.check_config`, `models.check_config`,
`gan_config.check_config`, `attack.check_config`, `training.check_config`;
`config_lib.validate` calls them in order). They share these small checkers so that
every message reads the same: ``field=value: what is allowed``. A checker returns the
value it accepted.

This module imports nothing from the package but `errors`, so any module may use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NoReturn

from fedgan_jax.core.errors import ConfigError, FedGanError


def fail(field: str, value: Any, allowed: str, error: type[FedGanError] = ConfigError) -> NoReturn:
    raise error(f"{field}={value!r}: {allowed}")


def integer(field: str, value: Any, low: int, high: int | None = None, error=ConfigError) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(field, value, "must be an integer", error)
    if high is None and value < low:
        fail(field, value, f"must be an integer >= {low}", error)
    if high is not None and not low <= value <= high:
        fail(field, value, f"must be an integer in [{low}, {high}]", error)
    return value


def number(
    field: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
    error=ConfigError,
) -> float:
    """A finite number in [low, high]; `open_low` / `open_high` exclude an end."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        fail(field, value, "must be a finite number", error)
    if value < low or (open_low and value == low) or value > high or (open_high and value == high):
        bracket = ("(" if open_low else "[") + f"{low}, {high}" + (")" if open_high else "]")
        fail(field, value, f"must lie in {bracket}", error)
    return float(value)


def choice(field: str, value: Any, allowed: Iterable[str], error=ConfigError) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        fail(field, value, f"allowed: {', '.join(allowed)}", error)
    return value


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        fail(field, value, "must be True or False")
    return value


def unique(field: str, values: Iterable[Any]) -> tuple:
    values = tuple(values)
    if len(set(values)) != len(values):
        fail(field, values, "has a duplicate entry")
    return values


def subset(field: str, value: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """A non-empty tuple of distinct entries of `allowed`."""
    value = tuple(value)
    allowed = tuple(allowed)
    if not value:
        fail(field, value, f"must name at least one of {', '.join(allowed)}")
    for item in value:
        if item not in allowed:
            fail(field, value, f"unknown entry {item!r}; allowed: {', '.join(allowed)}")
    return unique(field, value)
