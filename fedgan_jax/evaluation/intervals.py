"""Mean over seeds and the half-width of its 95% Student-t confidence interval.

A sweep repeats each setting over n seeds x_1..x_n. Its tables and figures report
mean ± h with h = t_{0.975, n-1} * s / sqrt(n), s the sample standard deviation
(ddof=1): the interval that covers the true mean of the seed distribution in 95% of
sweeps when the per-seed values are roughly normal (Student 1908). With a handful of
seeds t is much larger than the normal 1.96 (12.71 for n = 2, 4.30 for n = 3), which is
the point: two seeds say little. One seed has no spread, so no std and no interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import stats

LEVEL = 0.95
NOTE = "± is the half-width of the 95% t-interval over seeds, n = seeds"


def ci95_half_width(std: float | None, n: int) -> float | None:
    """t_{0.975, n-1} * std / sqrt(n) for a sample std (ddof=1) of n values; None below 2."""
    if std is None or n < 2:
        return None
    return float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * std / math.sqrt(n))


def mean_std_ci95(values: Iterable) -> tuple[float | None, float | None, float | None]:
    """Mean, sample std (ddof=1) and 95% t half-width of the values that are not None.

    The std and half-width are None with fewer than two values, the mean with none."""
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return None, None, None
    std = float(v.std(ddof=1)) if len(v) > 1 else None
    return float(v.mean()), std, ci95_half_width(std, len(v))


def cell(mean: float | None, half: float | None, digits: int = 3) -> str:
    """A table cell: ``mean ± half`` (`NOTE`), the mean alone for one seed, ``n/a`` for none."""
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if half is not None else "")
