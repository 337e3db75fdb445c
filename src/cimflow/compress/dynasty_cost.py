"""Modeled training cost of the bit-width maps on a bit-scalable accelerator.

Assumptions (each one a choice, stated so it can be argued with):

* Compute: a bit-scalable MAC array (Bit Fusion-like, 1-bit granularity) whose time and
  energy for one MAC are proportional to the product of its operands' widths m_a * m_b.
  Against the baseline's b x b MAC (b = ``baseline_bits``) a MAC costs m_a * m_b / b^2.
* The array is compute-bound (memory bandwidth sized for the baseline), so relative
  time is the ratio of summed width products; memory traffic only costs energy.
* Every training step runs three GEMMs per conv/linear layer, all on quantized
  operands: forward W x A, input gradient G x W (skipped when the layer's input needs
  no gradient, e.g. the first layer) and weight gradient G x A.
* Memory traffic: each GEMM reads each operand once from the on-chip buffer: the
  payload bits (entries x width), one shared exponent per block and, for dynamic maps,
  ceil(log2 |candidates|) bits of width metadata per block. Results are requantized
  before they are stored, so their traffic is counted when they are next read as an
  operand; fp32 master-weight updates are the same in both runs and left out.
* Energy = mac_energy_pj per b x b MAC (scaled by width product) + memory_energy_pj_per_bit
  per bit moved. Both are parameters; the 45 nm figures often quoted (Horowitz, ISSCC
  2014) are not verified here.

Width products are summed exactly, not estimated from mean widths: for one sample the
sum over all MACs of m_w * m_a is the convolution of the weight width map with the
activation width map (and the gradient products are the matching transposed
convolutions), so the cost follows the actual block maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from cimflow.compress.dynasty_params import CostParams

PHASES = ("forward", "grad_input", "grad_weight")


@dataclass(frozen=True)
class LayerGeometry:
    """What the cost model needs of one conv/linear layer (shapes per sample)."""

    name: str
    weight_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    computes_input_gradient: bool

    @property
    def is_conv(self) -> bool:
        return len(self.weight_shape) == 4

    @property
    def phases(self) -> tuple[str, ...]:
        return PHASES if self.computes_input_gradient else ("forward", "grad_weight")


@dataclass(frozen=True)
class OperandWidths:
    """Per-entry widths of one layer's three operands and their block counts."""

    weight: Tensor  # weight_shape
    activation: Tensor  # input_shape, one sample
    gradient: Tensor  # output_shape, one sample
    weight_blocks: int
    activation_blocks: int  # per sample
    gradient_blocks: int  # per sample

    def filled(self, width: float) -> OperandWidths:
        """The same operands with every entry at ``width`` (e.g. the uniform baseline)."""
        return OperandWidths(*(torch.full_like(t, width) for t in (self.weight, self.activation, self.gradient)),
                             self.weight_blocks, self.activation_blocks, self.gradient_blocks)


def width_products(geom: LayerGeometry, weight: Tensor, activation: Tensor, gradient: Tensor) -> dict[str, float]:
    """Sum over one sample's MACs of the two operand widths, per phase (exact).

    Arguments are per-entry width maps in the layer's tensor layouts (one sample for
    activation and gradient); all-ones maps count the MACs.
    """
    wt, act, grad = (t.to(torch.float64) for t in (weight, activation, gradient))
    if geom.is_conv:
        conv = dict(stride=geom.stride, padding=geom.padding, dilation=geom.dilation, groups=geom.groups)
        products = {
            "forward": F.conv2d(act[None], wt, None, **conv),
            "grad_input": torch.nn.grad.conv2d_input((1, *geom.input_shape), wt, grad[None], **conv),
            "grad_weight": torch.nn.grad.conv2d_weight(act[None], geom.weight_shape, grad[None], **conv),
        }
    else:
        products = {"forward": wt @ act, "grad_input": grad @ wt, "grad_weight": grad.sum() * act.sum()}
    return {phase: float(products[phase].sum()) for phase in geom.phases}


def macs_per_sample(geom: LayerGeometry) -> dict[str, float]:
    """MACs of each phase for one sample."""
    shapes = (geom.weight_shape, geom.input_shape, geom.output_shape)
    return width_products(geom, *(torch.ones(shape, dtype=torch.float64) for shape in shapes))


def operand_bits(w: OperandWidths, bits_per_block: float) -> dict[str, float]:
    """Bits moved per read of each operand: payload plus per-block overhead (weights per step, others per sample)."""
    return {
        "weight": float(w.weight.sum()) + w.weight_blocks * bits_per_block,
        "activation": float(w.activation.sum()) + w.activation_blocks * bits_per_block,
        "gradient": float(w.gradient.sum()) + w.gradient_blocks * bits_per_block,
    }


PHASE_OPERANDS = {
    "forward": ("weight", "activation"),
    "grad_input": ("gradient", "weight"),
    "grad_weight": ("gradient", "activation"),
}
METRICS = ("macs", "mac_bit_products", "baseline_mac_bit_products", "bits_moved", "baseline_bits_moved",
           "metadata_bits")


def _traffic(phase: str, bits: dict[str, float]) -> tuple[float, float]:
    """(bits per step, bits per sample) a phase reads: weights once per step, the rest per sample."""
    ops = PHASE_OPERANDS[phase]
    return (sum(bits[op] for op in ops if op == "weight"), sum(bits[op] for op in ops if op != "weight"))


class CostMeter:
    """Accumulates modeled cost over the steps actually trained, per layer and phase.

    The reference is the same run with every block at ``baseline_bits`` and no width
    metadata, so a uniform baseline map gives exactly 1.0.
    """

    def __init__(self, geometries: list[LayerGeometry], cost: CostParams, metadata_bits: int) -> None:
        self.geometries = geometries
        self.cost = cost
        self.metadata_bits = metadata_bits
        self.keys = [(g.name, phase) for g in geometries for phase in g.phases]
        self.macs = {g.name: macs_per_sample(g) for g in geometries}  # per layer and phase, one sample
        self.totals = {metric: dict.fromkeys(self.keys, 0.0) for metric in METRICS}
        self._rates: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}

    def set_widths(self, widths: dict[str, OperandWidths]) -> None:
        """Install the maps in force from now on: (per-step, per-sample) rates per metric."""
        b, exponent = self.cost.baseline_bits, self.cost.exponent_bits
        for geom in self.geometries:
            w = widths[geom.name]
            macs = self.macs[geom.name]
            products = width_products(geom, w.weight, w.activation, w.gradient)
            moved = operand_bits(w, exponent + self.metadata_bits)
            baseline_moved = operand_bits(w.filled(float(b)), exponent)
            metadata = operand_bits(w.filled(0.0), self.metadata_bits)
            for phase in geom.phases:
                self._rates[(geom.name, phase)] = {
                    "macs": (0.0, macs[phase]),
                    "mac_bit_products": (0.0, products[phase]),
                    "baseline_mac_bit_products": (0.0, macs[phase] * b * b),
                    "bits_moved": _traffic(phase, moved),
                    "baseline_bits_moved": _traffic(phase, baseline_moved),
                    "metadata_bits": _traffic(phase, metadata),
                }

    def add_step(self, batch_size: int) -> None:
        """Charge one training step of ``batch_size`` samples at the installed maps."""
        for key, rates in self._rates.items():
            for metric, (per_step, per_sample) in rates.items():
                self.totals[metric][key] += per_step + batch_size * per_sample

    def table(self) -> pd.DataFrame:
        """Rows per layer and phase plus a ``total``/``all`` row, with relative time and energy."""
        frame = pd.DataFrame([{"layer": layer, "phase": phase, **{m: self.totals[m][(layer, phase)] for m in METRICS}}
                              for layer, phase in self.keys])
        total = {"layer": "total", "phase": "all", **frame[list(METRICS)].sum().to_dict()}
        frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
        frame["compute_energy_pj"], frame["memory_energy_pj"] = self._energy(frame["mac_bit_products"],
                                                                              frame["bits_moved"])
        frame["energy_pj"] = frame["compute_energy_pj"] + frame["memory_energy_pj"]
        frame["baseline_energy_pj"] = sum(self._energy(frame["baseline_mac_bit_products"],
                                                       frame["baseline_bits_moved"]))
        frame["relative_time"] = frame["mac_bit_products"] / frame["baseline_mac_bit_products"]
        frame["relative_energy"] = frame["energy_pj"] / frame["baseline_energy_pj"]
        return frame

    def _energy(self, mac_bit_products: pd.Series, bits_moved: pd.Series) -> tuple[pd.Series, pd.Series]:
        """(compute, memory) energy in pJ: b x b MACs at mac_energy_pj, bits at memory_energy_pj_per_bit."""
        compute = self.cost.mac_energy_pj * mac_bit_products / self.cost.baseline_bits**2
        return compute, self.cost.memory_energy_pj_per_bit * bits_moved
