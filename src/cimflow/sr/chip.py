"""A super-resolution network on the simulated CD-CiM chip, one sparsity level at a time.

At each level the int8 model of stage ``export`` runs as the method defines it
(:class:`LevelModels`):

- Feature Regularization (``threshold``/``topk``): the sparsifier on the ``nn.ReLU``
  modules, thresholds as trained, applied digitally to the converted outputs. A dropped
  entry becomes a zero input code, so the next layer's rows for it carry no charge: the
  array's switched capacitance and the input drivers scale with the 1-bits actually
  driven (:mod:`cimflow.cim.energy`), while every column is still converted in every
  cycle, because the rows of a column fire in parallel and which channels are zero
  changes from pixel to pixel. Sparsity saves the data-dependent part of the macro's
  energy, not cycles or conversions.
- The structured baseline (``channel``): the level's channels are the same everywhere,
  so they are removed for real (:func:`cimflow.shrink.shrink_quantized`): the producing
  layer loses columns and its consumer rows, hence segments, conversions and cycles.

The peripheral work (requantization, buffers) is counted on the network as the level runs
it: dense for Feature Regularization, as an engine that does not compress activations
would spend it; the smaller network for the structured baseline. ADC full scales are set per
level on training patches, since sparser inputs give smaller sums: a chip holds one range
register set per level it offers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from cimflow.cim.energy import performance
from cimflow.compress.featreg.sparsify import Sparsifier
from cimflow.hardware import LayerPlan, full_scales
from cimflow.params.cim import CimParams
from cimflow.peripheral import graph_work, system_energy
from cimflow.quantize import fold_batchnorm, load_int8
from cimflow.shrink import channel_chains, shrink, shrink_quantized
from cimflow.sr.data import SrSet
from cimflow.sr.evaluate import DENSE
from cimflow.sr.inference import to_pixels, y_tensor
from cimflow.sr.metrics import psnr_y, rgb_to_y, ssim_y

ENERGY_PARTS = ("array", "input", "adc", "digital")
EVENTS = ("macs", "cycles", "conversions_full", "conversions_sign_only", "active_bit_products", "active_input_bits")


class LevelModels:
    """Fresh copies of an int8 SR model as it runs at each of its levels."""

    def __init__(self, int8_path: Path, thresholds: pd.DataFrame | None, source: str) -> None:
        """``thresholds``: the method's THRESHOLDS table, None for a dense method."""
        self.int8_path, self.thresholds, self.source = int8_path, thresholds, source
        qmodel, self.spec = load_int8(int8_path)
        self.float_model = fold_batchnorm(self.spec.build().eval())
        probe = None if thresholds is None else Sparsifier.from_table(qmodel, thresholds, source)
        self.mode = None if probe is None else probe.mode
        self.labels = [DENSE] if probe is None else [f"{lv:g}" for lv in probe.levels]
        self._chains = channel_chains(self.float_model) if self.mode == "channel" else []
        self._keep = ({label: probe.keep_masks(self.float_model, i) for i, label in enumerate(self.labels)}
                      if self.mode == "channel" else {})  # each structured level's kept channels

    def build(self, label: str) -> nn.Module:
        if label not in self.labels:
            raise ValueError(f"{self.source}: no level {label!r} (levels {self.labels})")
        qmodel, _ = load_int8(self.int8_path)
        if self.mode == "channel":
            return shrink_quantized(qmodel, self._chains, self._keep[label])
        if self.thresholds is not None:  # its hooks stay on the returned model
            Sparsifier.from_table(qmodel, self.thresholds, self.source).level = self.labels.index(label)
        return qmodel

    def float_at(self, label: str) -> nn.Module:
        """The float network with the level's structure (its peripheral work is counted on it)."""
        return shrink(self.float_model, self._keep[label]) if self.mode == "channel" else self.float_model


def ranges_per_level(levels: LevelModels, batches: list[torch.Tensor], cim: CimParams,
                     relu: set[str]) -> dict[str, dict[str, list[float]]]:
    """ADC full scales of every layer at every level, from what the macro converts on
    ``batches`` with the digital int8 model at that level."""
    return {label: full_scales(levels.build(label), batches, cim.macro, cim.mapping, relu, cim.full_scale_percentile)
            for label in levels.labels}


def take_counters(plans: dict[str, LayerPlan]) -> dict[str, dict[str, float]]:
    """Each layer's counters since the last call, clearing them."""
    taken = {name: plan.counters for name, plan in plans.items()}
    for plan in plans.values():
        plan.counters = {}
    return taken


@dataclass
class ChipPass:
    """One model at one level on one chip (or on the int8 digital engine: ``plans`` None)."""

    model: nn.Module
    plans: dict[str, LayerPlan] | None


def peripheral_energy(float_model: nn.Module, cim: CimParams, lr_shape: tuple[int, int]) -> float:
    """Energy outside the macro for one image of ``lr_shape`` (requantization, buffers, adds)."""
    table = system_energy(graph_work(float_model, (1, 1, *lr_shape)), cim.system)
    return float(table["energy_system_j"].sum())


@torch.no_grad()
def evaluate_on_chip(label: str, chip: ChipPass, digital: ChipPass, data: SrSet, cim: CimParams,
                     float_model: nn.Module) -> pd.DataFrame:
    """One row per (image, layer) at level ``label``: the chip's PSNR/SSIM on Y beside the
    int8 digital engine's, and the layer's events and macro energy for that image."""
    chip.model.eval()
    digital.model.eval()
    take_counters(chip.plans)
    rows = []
    for i in tqdm(range(len(data)), desc=f"chip, level {label}", leave=False, disable=None):
        x = y_tensor(data.lr[i])
        hr = rgb_to_y(data.hr[i])
        on_chip, exact = to_pixels(chip.model(x)), to_pixels(digital.model(x))
        image = {"level": label, "set": data.sets[i], "image": data.names[i],
                 "lr_pixels": int(x.shape[-2] * x.shape[-1]),
                 "psnr_int8": psnr_y(exact, hr, data.scale), "psnr_chip": psnr_y(on_chip, hr, data.scale),
                 "ssim_chip": ssim_y(on_chip, hr, data.scale),
                 "energy_system_j": peripheral_energy(float_model, cim, tuple(x.shape[-2:]))}
        for layer, counts in take_counters(chip.plans).items():
            rows.append(image | {"layer": layer, **{k: float(counts.get(k, 0.0)) for k in EVENTS},
                                 **{f"energy_{p}_j": float(counts.get(f"energy_{p}_j", 0.0)) for p in ENERGY_PARTS},
                                 "energy_j": float(counts.get("energy_total_j", 0.0))})
    return pd.DataFrame(rows)


def summarize(layers: pd.DataFrame, cim: CimParams) -> dict:
    """Per test set and level: mean PSNR (int8 digital and on chip), SSIM, and per image the
    macro's energy by component, cycles, sign-only share, TOPS/W, and peripheral energy."""
    per_image = layers.groupby(["set", "level", "image"], sort=False).agg(
        {**{c: "first" for c in ("psnr_int8", "psnr_chip", "ssim_chip", "energy_system_j", "lr_pixels")},
         **{c: "sum" for c in (*EVENTS, *(f"energy_{p}_j" for p in ENERGY_PARTS), "energy_j")}}).reset_index()
    sets: dict[str, dict] = {}
    for (set_name, label), group in per_image.groupby(["set", "level"], sort=False):
        totals = {c: float(group[c].sum()) for c in (*EVENTS, "energy_j")}
        conversions = totals["conversions_full"] + totals["conversions_sign_only"]
        perf = performance({"macs": totals["macs"], "cycles": totals["cycles"], "energy_total_j": totals["energy_j"]},
                           cim.macro)
        n = len(group)
        sets.setdefault(set_name, {"images": n, "levels": {}})["levels"][label] = {
            "psnr_int8": float(group["psnr_int8"].mean()), "psnr_chip": float(group["psnr_chip"].mean()),
            "ssim_chip": float(group["ssim_chip"].mean()),
            "energy_per_image_j": totals["energy_j"] / n,
            **{f"energy_{p}_per_image_j": float(group[f"energy_{p}_j"].sum()) / n for p in ENERGY_PARTS},
            "energy_per_lr_pixel_j": totals["energy_j"] / float(group["lr_pixels"].sum()),
            "energy_system_per_image_j": float(group["energy_system_j"].sum()) / n,
            "cycles_per_image": totals["cycles"] / n, "macs_per_image": totals["macs"] / n,
            "sign_only_fraction": totals["conversions_sign_only"] / max(conversions, 1.0),
            "latency_per_image_s": perf["seconds"] / n, "tops_per_w": perf["tops_per_w"],
        }
    return sets
