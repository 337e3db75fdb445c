"""Euclidean projections onto the per-layer constraint sets that ADMM enforces.

Each projection is exact and deterministic: pruning keeps exactly the requested count
(ties go to the lower flat index), and quantization snaps every kept entry to the
nearest level of {±1..±M}·q with 0 reserved for pruned entries, so quantizing a
pruned layer never revives a weight. ``allowed`` restricts a projection to the
entries that survived earlier steps; that is how progressive pruning shrinks its
search space.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Granularity = Literal["unstructured", "filter"]

SCALE_GRID = 100  # candidate scales q0*k/SCALE_GRID, k = 1..SCALE_GRID, q0 = max|v| / M
LLOYD_STEPS = 20  # refinements q <- <v,c>/<c,c>; each one never increases the error


def kept_count(total: int, ratio: float) -> int:
    """How many of ``total`` units survive pruning ``ratio`` of them (at least one)."""
    return max(1, total - math.floor(ratio * total + 0.5))


def top_k_mask(scores: Tensor, k: int) -> Tensor:
    """Bool mask of the ``k`` largest scores; equal scores go to the lower flat index."""
    order = torch.argsort(scores.flatten(), descending=True, stable=True)
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    mask[order[:k]] = True
    return mask.view(scores.shape)


def prune_mask(weight: Tensor, ratio: float, granularity: Granularity, allowed: Tensor) -> Tensor:
    """Entries of ``weight`` kept when pruning ``ratio`` of the layer, chosen among ``allowed``.

    ``unstructured`` ranks single entries by |w|; ``filter`` ranks output filters (rows
    of a Linear) by their L2 norm and keeps or drops each one whole. ``ratio`` counts
    against the whole layer, so progressive steps give absolute targets.
    """
    if granularity == "unstructured":
        scores, candidates = weight.abs(), allowed
    else:
        scores, candidates = weight.flatten(1).norm(dim=1), allowed.flatten(1).any(dim=1)
    scores = torch.where(candidates, scores, torch.full_like(scores, -1.0))
    k = min(kept_count(scores.numel(), ratio), int(candidates.sum()))
    keep = top_k_mask(scores, k)
    if granularity == "filter":
        keep = keep.view(-1, *[1] * (weight.ndim - 1)).expand_as(weight)
    return keep & allowed


def prune_projection(values: Tensor, ratio: float, granularity: Granularity, allowed: Tensor) -> Tensor:
    """Nearest point to ``values`` with the layer's pruning target met (the ADMM Z-step)."""
    keep = prune_mask(values, ratio, granularity, allowed)
    return torch.where(keep, values, torch.zeros_like(values))


def level_count(bits: int) -> int:
    """Levels per sign M: b bits hold codes -M..M (0 only for pruned entries); b = 1 is binary."""
    return max(1, 2 ** (bits - 1) - 1)


def nearest_codes(values: Tensor, scale: float, levels: int) -> Tensor:
    """Integer codes in ±1..±levels nearest to values/scale (a value of 0 maps to +1)."""
    magnitude = torch.clamp(torch.round(values.abs() / scale), 1, levels)
    return torch.where(values >= 0, magnitude, -magnitude).to(torch.int8)


class _SortedMagnitudes:
    """|v| sorted once, with prefix sums, so any scale's snapping error costs O(M log n).

    Codes never take 0 and levels are symmetric, so only |v| matters: level k collects
    the magnitudes in [(k - 1/2)q, (k + 1/2)q) (level 1 from 0, level M to infinity),
    and its error is sum (|v| - kq)^2 = S2 - 2kq S1 + k^2 q^2 n over that slice.
    """

    def __init__(self, values: Tensor, levels: int) -> None:
        self.sorted = values.detach().double().abs().flatten().sort().values
        zero = torch.zeros(1, dtype=torch.float64)
        self.sum1 = torch.cat([zero, self.sorted.cumsum(0)])
        self.sum2 = torch.cat([zero, self.sorted.pow(2).cumsum(0)])
        self.levels = torch.arange(1, levels + 1, dtype=torch.float64)

    def _bins(self, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        edges = torch.searchsorted(self.sorted, (self.levels[:-1] + 0.5) * scale)
        cuts = torch.cat([edges.new_zeros(1), edges, edges.new_full((1,), self.sorted.numel())])
        lo, hi = cuts[:-1], cuts[1:]
        return (hi - lo).double(), self.sum1[hi] - self.sum1[lo], self.sum2[hi] - self.sum2[lo]

    def error(self, scale: float) -> float:
        count, total, squares = self._bins(scale)
        k = self.levels
        return float((squares - 2 * k * scale * total + (k * scale) ** 2 * count).sum())

    def refit(self, scale: float) -> float:
        """The best scale for the level assignment that ``scale`` makes: <|v|, k> / <k, k>."""
        count, total, _ = self._bins(scale)
        k = self.levels
        return float((k * total).sum() / (k * k * count).sum())


def fit_scale(values: Tensor, levels: int) -> float:
    """Scale q minimising ||v - q·codes(v/q)||², as a float32-exact number.

    The error is piecewise quadratic in q and not unimodal, so a golden-section search
    can stall; instead a grid over (0, max|v|/M] (which contains the naive max-based
    scale) picks the basin and Lloyd steps refine it. For M = 1 the result is mean|v|,
    the closed-form binarization scale.
    """
    magnitudes = _SortedMagnitudes(values, levels)
    peak = float(magnitudes.sorted[-1]) if magnitudes.sorted.numel() else 0.0
    if peak == 0.0:
        return float(torch.finfo(torch.float32).tiny)
    candidates = [peak / levels * k / SCALE_GRID for k in range(1, SCALE_GRID + 1)]
    scale = min(candidates, key=magnitudes.error)
    for _ in range(LLOYD_STEPS):
        refined = magnitudes.refit(scale)
        if magnitudes.error(refined) >= magnitudes.error(scale):
            break
        scale = refined
    return float(torch.tensor(scale, dtype=torch.float32))


def layer_codes(values: Tensor, scale: float, bits: int, allowed: Tensor) -> Tensor:
    """Int8 codes of a layer at ``scale``: nearest nonzero level on ``allowed`` entries, 0 elsewhere."""
    codes = nearest_codes(values, scale, level_count(bits))
    return torch.where(allowed, codes, torch.zeros_like(codes))


def quantize(values: Tensor, bits: int, allowed: Tensor) -> tuple[Tensor, float]:
    """Codes and the layer scale q fitted on the ``allowed`` entries."""
    scale = fit_scale(values[allowed], level_count(bits))
    return layer_codes(values, scale, bits, allowed), scale


def quantize_projection(values: Tensor, bits: int, allowed: Tensor) -> Tensor:
    """Nearest point to ``values`` on the layer's level set (the ADMM Z-step)."""
    codes, scale = quantize(values, bits, allowed)
    return dequantize(codes, scale, values.dtype)


def dequantize(codes: Tensor, scale: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """Weights codes·q; exact in float32 because q is float32-representable."""
    return codes.to(dtype) * torch.tensor(scale, dtype=dtype, device=codes.device)
