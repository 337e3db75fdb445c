"""Map a layer's weights onto the macro once: segments, effective weights, activity.

A layer W (K, M) is cut into S = ceil(K / rows) row segments: greedy ([s*rows,
(s+1)*rows) plus a short tail) or balanced (sizes differing by at most one row, so
K = 144 is 72 + 72, not 128 + 16). Each segment's rows start at physical row 0 of the
column. With digital accumulation every segment is converted and the partial sums are
added digitally; with analog accumulation the segments' charges are summed on a hold
capacitor and converted once. Each (segment, column) pair whose weights are all zero is
skipped: no cycle, no conversion, no energy. Columns are converted in groups of ``adcs``
per cycle (column m on ADC m % adcs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from cimflow.cim.chip import ChipInstance
from cimflow.cim.config import MacroConfig

BIT_COUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
"""Ones in each two's-complement byte, indexed by the byte's uint8 view."""


@dataclass(frozen=True)
class MappedWeights:
    """A layer's weights as placed on one chip; build with :func:`map_weights`."""

    chip_seed: int
    config: MacroConfig
    effective: np.ndarray
    """(K, M) float32 weights with the chip's capacitor mismatch folded in."""
    bounds: np.ndarray
    """(S, 2) int32 [first, end) weight rows of each segment."""
    active: np.ndarray
    """(S, M) uint8: 1 where the segment's column has a nonzero weight."""
    active_groups: np.ndarray
    """(S,) cycles per input vector in each segment: column groups with an active column."""
    weight_bits_per_row: np.ndarray
    """(K,) ones in the weight bytes of each row, for the array energy."""
    accumulation: Accumulation
    """How segments combine: 'digital' (convert each, add) or 'analog' (hold, convert once)."""

    @property
    def shape(self) -> tuple[int, int]:
        k, m = self.effective.shape
        return k, m

    @property
    def segments(self) -> int:
        return self.active.shape[0]

    @property
    def conversion_steps(self) -> int:
        """Conversions per output: one per segment (digital), or one (analog)."""
        return 1 if self.accumulation == "analog" else self.segments

    @property
    def converted_columns(self) -> np.ndarray:
        """(conversion_steps, M) uint8: 1 where a conversion happens."""
        if self.accumulation == "analog":
            return self.active.any(axis=0, keepdims=True).astype(np.uint8)
        return self.active


Accumulation = Literal["digital", "analog"]
Segmenting = Literal["balanced", "greedy"]


def segment_bounds(k: int, rows: int, segmenting: Segmenting = "greedy") -> list[tuple[int, int]]:
    """[first, end) rows of each segment of a K-long reduction on ``rows``-row columns."""
    if segmenting == "greedy":
        return [(start, min(start + rows, k)) for start in range(0, k, rows)]
    count = -(-k // rows)
    sizes = [k // count + (1 if s < k % count else 0) for s in range(count)]
    ends = np.cumsum(sizes).tolist()
    return list(zip([0, *ends[:-1]], ends))


def map_weights(
    chip: ChipInstance,
    w_codes: np.ndarray,
    segmenting: Segmenting = "greedy",
    accumulation: Accumulation = "digital",
) -> MappedWeights:
    """Place int8 weight codes (K, M) on ``chip``."""
    if w_codes.dtype != np.int8 or w_codes.ndim != 2 or 0 in w_codes.shape:
        raise ValueError(
            f"weight codes must be a non-empty 2-D int8 array; got {w_codes.dtype} {w_codes.shape}"
        )
    if segmenting not in ("balanced", "greedy") or accumulation not in ("digital", "analog"):
        raise ValueError(f"unknown segmenting {segmenting!r} or accumulation {accumulation!r}")
    cfg = chip.config
    k, m = w_codes.shape
    nonzero = w_codes != 0
    bounds = segment_bounds(k, cfg.rows, segmenting)
    row_in_segment = np.concatenate([np.arange(hi - lo) for lo, hi in bounds])
    active = np.stack([nonzero[lo:hi].any(axis=0) for lo, hi in bounds])
    groups = -(-m // cfg.adcs)
    padded = np.zeros((active.shape[0], groups * cfg.adcs), dtype=bool)
    padded[:, :m] = active
    return MappedWeights(
        chip_seed=chip.seed,
        config=cfg,
        effective=np.ascontiguousarray(chip.effective_weights(w_codes, row_in_segment)),
        bounds=np.array(bounds, dtype=np.int32),
        active=active.astype(np.uint8),
        active_groups=padded.reshape(active.shape[0], groups, cfg.adcs).any(axis=2).sum(axis=1),
        weight_bits_per_row=BIT_COUNT[w_codes.view(np.uint8)].sum(axis=1),
        accumulation=accumulation,
    )
