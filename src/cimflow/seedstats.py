"""Statistics over training seeds: spread of a metric, and paired differences.

Every seed of a method is trained, compressed and tested on the same split as the
same seed of its reference, so a method is judged by its per-seed differences
(paired), not by two independent means: the shared test set and the shared start
cancel. The interval is Student's t over the seeds, so it covers seed-to-seed
variation of the difference; the test set is fixed, so its own sampling error is not
in it (each accuracy's Wilson interval in the per-seed table shows that part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Paired:
    """Mean of per-seed differences a - b with a two-sided t interval (NaN below two seeds)."""

    seeds: int
    mean: float
    std: float
    low: float
    high: float


def paired_difference(a: pd.Series, b: pd.Series, confidence: float) -> Paired:
    """Paired difference over the seeds (index) present in both ``a`` and ``b``."""
    return mean_interval(a - b, confidence)


def mean_interval(values: pd.Series, confidence: float) -> Paired:
    """Mean of ``values`` (NaNs dropped) with a two-sided Student-t interval over them."""
    diff = values.dropna()
    n = len(diff)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(diff.mean())
    if n == 1:
        return Paired(1, mean, math.nan, math.nan, math.nan)
    std = float(diff.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Paired(n, mean, std, mean - half, mean + half)


def mean_std(values: pd.Series) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN for one value)."""
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan
