"""What the CiM stages share: building the simulated chip and running a model on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cimflow import layout
from cimflow.artifacts import load_table
from cimflow.cim.calibration import CalibrationTables
from cimflow.cim.config import MacroConfig
from cimflow.cim.simulator import CimMacro
from cimflow.params.cim import CimParams
from cimflow.data.split import Split
from cimflow.graph import relu_follows
from cimflow.hardware import LayerPlan, attach_cim, total_counters
from cimflow.measured_inl import load_measured_inl
from cimflow.modelio import ModelSpec
from cimflow.quantize import fold_batchnorm, load_int8
from cimflow.train import evaluate_model

CPU = torch.device("cpu")


def load_calibration() -> CalibrationTables:
    return CalibrationTables(load_table(layout.CIM_CODES), load_table(layout.CIM_TRIM))


def cim_model(
    int8_path: Path,
    macro: MacroConfig,
    cim: CimParams,
    scales: dict[str, list[float]],
    calibration: CalibrationTables | None,
) -> tuple[torch.nn.Module, ModelSpec, dict[str, LayerPlan]]:
    """A fresh copy of the int8 model routed through one simulated chip."""
    qmodel, spec = load_int8(int8_path)
    return qmodel, spec, on_chip(qmodel, macro, cim, scales, calibration, relu_layers(spec))


def on_chip(qmodel: torch.nn.Module, macro: MacroConfig, cim: CimParams, scales: dict[str, list[float]],
            calibration: CalibrationTables | None, relu: set[str]) -> dict[str, LayerPlan]:
    """Route ``qmodel`` (in place) through the chip of ``cim.chip_seed``."""
    chip = CimMacro(macro, cim.chip_seed, calibration, measured_inl=load_measured_inl(cim))
    return attach_cim(qmodel, chip, scales, relu, cim.mapping, cim.noise, cim.noise_seed)


def relu_layers(spec: ModelSpec) -> set[str]:
    """Layers a ReLU directly follows, from the graph as the folded model runs."""
    return relu_follows(fold_batchnorm(spec.build().eval()))


def without_fused_relu(macro: MacroConfig) -> MacroConfig:
    return MacroConfig.from_mapping(macro.model_dump() | {"fused_relu": False})


def accuracy_and_counters(
    model: torch.nn.Module, spec: ModelSpec, plans: dict[str, LayerPlan] | None, data: Split, batch_size: int
) -> tuple[float, np.ndarray, dict[str, float]]:
    _, acc, pred = evaluate_model(model, data.images, data.labels, spec.prep, batch_size, CPU)
    return acc, pred, total_counters(plans) if plans else {}


def scales_from_mapping(mapping_path: Path, column: str = "full_scales") -> dict[str, list[float]]:
    """Per-layer ADC ranges stored by stage ``map`` (``full_scales_unfused``: for the macro without fused ReLU)."""
    table = load_table(mapping_path)
    return {layer: [float(v) for v in values] for layer, values in zip(table["layer"], table[column], strict=True)}
