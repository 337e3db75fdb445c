"""Per-pixel channel sparsity on hidden features, at a level chosen per forward pass.

A :class:`Sparsifier` attaches to every ``nn.ReLU`` of a network (whose outputs are the
next convolution's inputs) and, at pixel p of layer l, keeps only some channels of the
feature vector F_l[:, p]:

- ``threshold``: entries above the layer's threshold tau_{l,s}. The count kept varies
  from pixel to pixel with the input (flat regions keep few channels, edges many). In
  training tau is the batch's s-quantile of the layer's entries, so the realised
  sparsity is the level by construction, and a running average (``momentum``) of those
  quantiles is kept for inference; :func:`calibrate` then sets tau_{l,s} from held-out
  images, layer by layer, which is the controller that makes the sparsity on unseen
  images track the requested level.
- ``topk``: the ceil((1 - s) C) largest entries at every pixel.
- ``channel``: the structured baseline, input-independent: the ceil((1 - s) C) channels
  of highest mean activation on training patches (:func:`rank_channels`), the same at
  every pixel and image; nested across levels, so one model serves them all as the
  other modes do. It is static channel pruning, compared at the same MAC budgets.

Dropped entries are multiplied by a detached 0/1 mask: the reconstruction gradient
reaches only the kept entries (the straight-through rule of the research notes), and
the regularizer (the dropped magnitude, :attr:`Sparsifier.dropped`) pushes the dropped
ones to zero, so removing them costs less and less.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from cimflow.shrink import ShrinkError, channel_chains


class Sparsifier:
    def __init__(self, model: nn.Module, mode: str, levels: list[float], momentum: float = 0.0) -> None:
        """``momentum``: of the running thresholds, updated in training only."""
        self.layers = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
        if not self.layers:
            raise ValueError(f"{type(model).__name__} has no nn.ReLU module to sparsify")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.levels, self.momentum = mode, list(levels), momentum
        self.thresholds = torch.zeros(len(levels), len(self.layers), dtype=torch.float64)
        self.kept: dict[tuple[int, int], torch.Tensor] = {}  # channel mode: (level, layer) -> bool (C,)
        self.level: int | None = None  # index into levels; None runs the network dense
        self.dropped: list[torch.Tensor] = []  # per sparsified layer call: mean dropped magnitude per pixel
        self.collect: int | None = None  # calibration: the layer whose raw entries to keep
        self.collected: list[torch.Tensor] = []
        modules = dict(model.named_modules())
        self._handles = [modules[name].register_forward_hook(self._hook(i)) for i, name in enumerate(self.layers)]

    @classmethod
    def from_table(cls, model: nn.Module, table: pd.DataFrame, source: str) -> Sparsifier:
        """A sparsifier at the levels, mode and thresholds of a :meth:`table` (the THRESHOLDS artifact)."""
        if table.empty or not {"level", "layer", "threshold", "mode"} <= set(table.columns):
            raise ValueError(f"{source}: not a thresholds table (columns level, layer, threshold, mode)")
        sparsifier = cls(model, str(table["mode"].iloc[0]), sorted(set(table["level"].astype(float))))
        sparsifier.load_table(table, source)
        return sparsifier

    def keep_masks(self, model: nn.Module, level: int) -> dict[str, torch.Tensor]:
        """Channel mode: the kept output channels, at ``level``, of the layer before each
        sparsified ReLU (for :func:`cimflow.shrink.shrink`), so the level's channels can be
        removed for real. ``model``: the float network (BatchNorm folded or not)."""
        chains = channel_chains(model)
        keep = {}
        for j, relu in enumerate(self.layers):
            chain = next((c for c in chains if relu in c.passes), None)
            if chain is None:
                raise ShrinkError(f"ReLU {relu} is not between a prunable layer and its one consumer, so its "
                                  "channels cannot be removed")
            keep[chain.layer] = self.kept[level, j]
        return keep

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook(self, index: int):
        def sparsify(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
            if self.collect == index:
                self.collected.append(output.detach().flatten().to(torch.float64))
                raise _Collected  # the rest of the network does not change this layer's entries
            if self.level is None or self.collect is not None and index >= self.collect:
                return output
            mask = self._mask(index, output, module.training).detach()
            self.dropped.append((output * ~mask).abs().sum(1).mean())
            return output * mask

        return sparsify

    def _mask(self, index: int, x: torch.Tensor, training: bool) -> torch.Tensor:
        level = self.levels[self.level]
        if self.mode == "channel":
            if (self.level, index) not in self.kept:
                raise RuntimeError(f"channel mode: rank_channels has not ranked layer {self.layers[index]}")
            return self.kept[self.level, index].to(x.device).view(1, -1, *([1] * (x.ndim - 2))).expand_as(x)
        if self.mode == "topk":
            keep = max(1, math.ceil((1.0 - level) * x.shape[1]))
            kth = x.abs().topk(keep, dim=1).values[:, -1:]
            return x.abs() >= kth
        if training:
            tau = quantile(x.detach().flatten(), level)
            with torch.no_grad():
                old = self.thresholds[self.level, index]
                self.thresholds[self.level, index] = self.momentum * old + (1 - self.momentum) * tau
        else:
            tau = self.thresholds[self.level, index].item()
        return x.abs() > tau

    def take_dropped(self) -> torch.Tensor | None:
        """Mean over the sparsified layers of their dropped magnitude; clears it."""
        dropped, self.dropped = self.dropped, []
        return torch.stack(dropped).mean() if dropped else None

    def table(self) -> pd.DataFrame:
        """One row per (level, layer): the threshold, and in channel mode the kept channels."""
        rows = [{"level": lv, "layer": layer, "threshold": float(self.thresholds[i, j])}
                | ({"kept": torch.nonzero(self.kept[i, j]).flatten().tolist(), "channels": len(self.kept[i, j])}
                   if self.mode == "channel" else {})
                for i, lv in enumerate(self.levels) for j, layer in enumerate(self.layers)]
        return pd.DataFrame(rows)

    def load_table(self, table: pd.DataFrame, source: str) -> None:
        """Thresholds from a :meth:`table` (the THRESHOLDS artifact)."""
        want = {(float(lv), layer) for lv in self.levels for layer in self.layers}
        got = {(float(lv), str(layer)) for lv, layer in zip(table["level"], table["layer"], strict=True)}
        if want != got:
            raise ValueError(f"{source}: thresholds for {sorted(got)} do not match levels {self.levels} "
                             f"and layers {self.layers}")
        for lv, layer, tau in zip(table["level"], table["layer"], table["threshold"], strict=True):
            self.thresholds[self.levels.index(float(lv)), self.layers.index(str(layer))] = float(tau)
        if self.mode == "channel":
            if not {"kept", "channels"} <= set(table.columns):
                raise ValueError(f"{source}: channel-mode thresholds without the kept channels")
            for lv, layer, kept, width in zip(table["level"], table["layer"], table["kept"], table["channels"],
                                              strict=True):
                mask = torch.zeros(int(width), dtype=torch.bool)
                mask[torch.as_tensor(list(kept), dtype=torch.long)] = True
                self.kept[self.levels.index(float(lv)), self.layers.index(str(layer))] = mask


MODES = ("threshold", "topk", "channel")


class _Collected(Exception):
    """Ends a calibration forward pass once the layer being calibrated has been seen."""


def quantile(values: torch.Tensor, level: float) -> float:
    """The ceil(level n)-th smallest value: keeping entries above it leaves a fraction >= level zero."""
    k = min(len(values), max(1, math.ceil(level * len(values))))
    return float(values.kthvalue(k).values)


@torch.no_grad()
def calibrate(model: nn.Module, sparsifier: Sparsifier, inputs: Iterable[torch.Tensor], max_entries: int,
              seed: int) -> None:
    """Thresholds from held-out inputs (threshold mode), layer by layer: layer l's tau at
    each level is the quantile of its entries with layers before it already sparsified
    at that level. At most ``max_entries`` entries per image (a seeded subsample) enter."""
    if sparsifier.mode != "threshold":
        return
    model.eval()
    inputs = list(inputs)
    rng = np.random.default_rng(seed)
    for level in range(len(sparsifier.levels)):
        sparsifier.level = level
        for index in range(len(sparsifier.layers)):
            sparsifier.collect, sparsifier.collected = index, []
            for x in inputs:
                try:
                    model(x)
                except _Collected:
                    pass
            entries = [e[torch.from_numpy(rng.choice(len(e), max_entries, replace=False))]
                       if len(e) > max_entries else e for e in sparsifier.collected]
            sparsifier.thresholds[level, index] = quantile(torch.cat(entries), sparsifier.levels[level])
    sparsifier.collect, sparsifier.collected, sparsifier.level = None, [], None
    sparsifier.take_dropped()


@torch.no_grad()
def rank_channels(model: nn.Module, sparsifier: Sparsifier, inputs: torch.Tensor, batch_size: int = 64) -> None:
    """Channel mode: rank each sparsified layer's channels by mean activation on ``inputs``
    (training patches, the network run dense) and keep, at level s, the ceil((1 - s) C)
    highest (ties to the lower index); the threshold recorded is the last kept channel's."""
    modules = dict(model.named_modules())
    sums: dict[int, torch.Tensor] = {}

    def hook(index: int):
        def add(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
            total = out.detach().abs().double().mean(dim=(0, *range(2, out.ndim))) * out.shape[0]
            sums[index] = sums.get(index, 0) + total
        return add

    handles = [modules[name].register_forward_hook(hook(i)) for i, name in enumerate(sparsifier.layers)]
    level, sparsifier.level = sparsifier.level, None
    try:
        model.eval()
        for batch in inputs.split(batch_size):
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
        sparsifier.level = level
    for j in range(len(sparsifier.layers)):
        importance = sums[j] / len(inputs)
        order = torch.argsort(-importance, stable=True)
        for i, lv in enumerate(sparsifier.levels):
            keep = max(1, math.ceil((1.0 - lv) * len(order)))
            mask = torch.zeros(len(order), dtype=torch.bool)
            mask[order[:keep]] = True
            sparsifier.kept[i, j] = mask
            sparsifier.thresholds[i, j] = float(importance[order[keep - 1]])
