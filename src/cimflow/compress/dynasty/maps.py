"""The adaptive bit-width map generator: sensitivities in, one width per block out.

Rule (per block b, candidates C ascending): m_b = min{m in C : s_b(m) <= tau}, the widest
candidate when none qualifies. On top of it:

* target: a fixed error threshold tau, or a budget (tau searched each refresh so the
  rule's proposals have a MAC-weighted mean width of at most the budget, which may
  ramp over training around ``average_bits``);
* hysteresis: a block moves to fewer bits only after the rule proposed fewer for
  ``hysteresis`` consecutive refreshes, and to more bits at once, so maps do not flap
  while keeping accuracy-critical increases immediate. The budget binds the proposals:
  blocks held up by hysteresis may exceed it until their streak completes. The
  starting map (widest, the warm-up) is a placeholder rather than a decision, so the
  first refresh may lower any block;
* stability: a level L raised when the training loss diverges or stalls and lowered
  after steady progress; the threshold used is tau / tighten_factor^L, which raises
  precision above the budget while training is in trouble.

Pure numpy and layer-agnostic: blocks of all tensors arrive as one flat array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from cimflow.compress.dynasty.params import BudgetTarget, StabilityParams, ThresholdTarget


class BitWidthMapGenerator:
    """Owns the current map, the hysteresis counters and the stability level."""

    def __init__(
        self,
        candidate_bits: Sequence[int],
        target: BudgetTarget | ThresholdTarget,
        hysteresis: int,
        stability: StabilityParams,
        block_weights: np.ndarray,
        min_bits: np.ndarray,
    ) -> None:
        """``block_weights``: each block's share of the budget (MACs it feeds); ``min_bits``: per-block floors."""
        self.candidates = np.asarray(candidate_bits, dtype=np.int64)
        self.target = target
        self.hysteresis = hysteresis
        self.stability = stability
        self.block_weights = np.asarray(block_weights, dtype=np.float64)
        self._below_floor = self.candidates[None, :] < np.asarray(min_bits)[:, None]
        self.index = np.full(len(self.block_weights), len(self.candidates) - 1, dtype=np.int64)
        self.lower_streak = np.full(len(self.block_weights), hysteresis - 1, dtype=np.int64)
        self.level = 0
        self.threshold = math.nan
        self._loss_window: list[float] = []

    @property
    def bits(self) -> np.ndarray:
        return self.candidates[self.index]

    def mean_bits(self, index: np.ndarray | None = None) -> float:
        """MAC-weighted mean width of the current map (or of ``index``)."""
        bits = self.candidates[self.index if index is None else index]
        return float(self.block_weights @ bits / self.block_weights.sum())

    def update(self, sensitivity: np.ndarray, loss_ema: float, progress: float) -> np.ndarray:
        """One refresh: sensitivity [n_blocks, n_candidates], the loss EMA and the fraction of
        training done (for a ramped budget) -> new widths."""
        sensitivity = np.where(self._below_floor, np.inf, sensitivity)
        self._update_level(loss_ema)
        if isinstance(self.target, BudgetTarget):
            base = self._budget_threshold(sensitivity, self.target.at(progress))
        else:
            base = self.target.max_sensitivity
        self.threshold = base / self.stability.tighten_factor**self.level
        self.index, self.lower_streak = self._step(self._proposal(sensitivity, self.threshold))
        return self.bits

    def _proposal(self, sensitivity: np.ndarray, threshold: float) -> np.ndarray:
        meets = sensitivity <= threshold
        return np.where(meets.any(axis=1), meets.argmax(axis=1), len(self.candidates) - 1)

    def _step(self, proposal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply hysteresis: (new candidate index, new lower-proposal streak) per block."""
        lower = proposal < self.index
        due = lower & (self.lower_streak + 1 >= self.hysteresis)
        index = np.where(lower & ~due, self.index, proposal)
        return index, np.where(lower & ~due, self.lower_streak + 1, 0)

    def _budget_threshold(self, sensitivity: np.ndarray, average_bits: float) -> float:
        """Smallest threshold whose proposals meet the budget (the largest if none does).

        The proposals' mean width only changes at the sensitivity values themselves and
        falls as the threshold grows, so a binary search over them is exact.
        """
        values = np.unique(sensitivity[np.isfinite(sensitivity)])
        if values.size == 0:
            return math.inf
        lo, hi = 0, len(values) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.mean_bits(self._proposal(sensitivity, values[mid])) <= average_bits:
                hi = mid
            else:
                lo = mid + 1
        return float(values[lo])

    def _update_level(self, loss_ema: float) -> None:
        """Raise at once on divergence, else decide every ``stall_patience`` refreshes: stall or progress.

        Divergence: the loss EMA exceeds the lowest EMA since the last level change by
        more than ``divergence_tolerance`` (relative), or is not finite.
        """
        s = self.stability
        window = self._loss_window
        window.append(loss_ema)
        change = 0
        if not math.isfinite(loss_ema) or loss_ema > min(window) * (1 + s.divergence_tolerance):
            change = 1
        elif len(window) > s.stall_patience:
            progressed = loss_ema <= window[-1 - s.stall_patience] * (1 - s.min_improvement)
            change = -1 if progressed else 1
        if change:
            self.level = min(max(self.level + change, 0), s.max_level)
            self._loss_window = [loss_ema] if math.isfinite(loss_ema) else []
