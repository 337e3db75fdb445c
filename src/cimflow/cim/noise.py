"""Counter-based Gaussian draws shared by the Cython kernel and the numpy reference.

Draw n of a stream is a pure function of (seed, n): 64 bits of SplitMix64 on counter
n // 4, of which the 16-bit lane n % 4 indexes a 2**16-entry inverse-CDF table. So a
draw does not depend on thread count or evaluation order, both backends see the same
draws, and one 64-bit hash feeds four conversions (Gaussian sampling, not the GEMM, was
the bottleneck for per-conversion noise: notes §3.2).

The table holds the normal quantiles at the 2**16 bin midpoints: each entry is
equally likely, and the tails are cut at +-4.33 sigma (probability 1.5e-5 beyond).
"""

from __future__ import annotations

from functools import cache
from statistics import NormalDist

import numpy as np

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
TABLE_BITS = 16


@cache
def normal_table() -> np.ndarray:
    """float32 standard-normal quantiles at the midpoints of 2**16 equiprobable bins."""
    size = 2**TABLE_BITS
    inverse_cdf = NormalDist().inv_cdf
    table = np.array([inverse_cdf((i + 0.5) / size) for i in range(size)], dtype=np.float32)
    table.flags.writeable = False
    return table


def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int) -> int:
    """64-bit key of the stream for ``seed`` (>= 0)."""
    if seed < 0:
        raise ValueError(f"noise seed must be >= 0; got {seed}")
    with np.errstate(over="ignore"):
        return int(mix64(np.array([seed], dtype=np.uint64) + GOLDEN_GAMMA)[0])


def normal_draws(key: int, indices: np.ndarray) -> np.ndarray:
    """Draws number ``indices`` (uint64, any shape) of the stream ``key``, as float32."""
    n = indices.astype(np.uint64, copy=False)
    with np.errstate(over="ignore"):
        hashes = mix64(np.uint64(key) + ((n >> np.uint64(2)) + np.uint64(1)) * GOLDEN_GAMMA)
    lanes = (hashes >> ((n & np.uint64(3)) * np.uint64(16))) & np.uint64(0xFFFF)
    return normal_table()[lanes.astype(np.intp)]
