"""Modeled training cost of the bit-width maps on a bit-scalable accelerator.

Assumptions (each one a choice, stated so it can be argued with):

* Compute, at two MAC granularities, both reported. Bit-exact (1-bit granularity): a
  MAC costs time and energy proportional to the product of its operands' widths, so
  against the baseline's b x b MAC (b = ``baseline_bits``) it costs m_a * m_b / b^2.
  Brick (Bit Fusion-like bricks of k = ``brick_bits``): each operand occupies
  ceil(m / k) bricks, so a MAC costs ceil(m_a/k) * ceil(m_b/k) / ceil(b/k)^2 and a
  3-bit operand costs a 4-bit one at k = 2. Widths include the sign bit.
* The array is compute-bound (memory bandwidth sized for the baseline), so relative
  time is the ratio of summed width (or brick) products; memory traffic only costs energy.
* Every training step runs three GEMMs per conv/linear layer, all on quantized
  operands: forward W x A, input gradient G x W (skipped when the layer's input needs
  no gradient, e.g. the first layer) and weight gradient G x A.
* Blocks are formed along the forward GEMM's reduction axis (dynasty.blocks), which
  the backward GEMMs do not share, so a block-floating-point engine re-blocks their
  operands along their own reduction axis, ``block_size`` entries per new block, and
  a new block takes the width of its widest member. The MACs are charged at those
  re-blocked widths; the forward GEMM at the stored ones.

  - grad_input reduces over output channels (conv: over (kernel tap, output channel),
    channel fastest, taps in the weight's own order). G is stored in blocks along
    output channels (linear) or along image-row runs of (pixel, output channel) (conv),
    the same kind of segment of this GEMM's reduction axis as A's blocks are of the
    forward's, so G keeps its widths; W is re-blocked: per input channel, runs of
    ``block_size`` consecutive (tap, output channel) entries.
  - grad_weight reduces over samples and output positions. Convention: a new block is
    a run of ``block_size`` consecutive output positions (row-major) of one sample,
    never spanning samples, per output channel for G and per (input channel, tap) for
    A's im2col rows (padding entries stay free). The maps are shared by every sample,
    so this cost is exact and independent of batch size and order, where blocks
    running across sample boundaries would depend on both; blocks across samples at
    one position would be uniform (the per-entry cost, a lower bound). A linear layer
    has one position per sample, so its grad_weight operands keep their widths.

  The per-entry ("entrywise") products, today's model before re-blocking, are kept
  for the record, so the size of the re-blocking charge is measured.
* Memory traffic: each GEMM reads each operand once from the on-chip buffer, in its
  stored layout: the payload bits (entries x width), one shared exponent per block
  and, for dynamic maps, ceil(log2 |candidates|) bits of width metadata per block.
  Re-blocking for the backward GEMMs happens on chip after the read and adds no
  traffic. Results are requantized before they are stored, so their traffic is
  counted when they are next read as an operand; fp32 master-weight updates are the
  same in both runs and left out.
* Energy = mac_energy_pj per b x b MAC (scaled by width or brick product) +
  memory_energy_pj_per_bit per bit moved. Both are parameters; the 45 nm figures often
  quoted (Horowitz, ISSCC 2014) are not verified here.
* Weight storage: the trained conv/linear weights at the final map (payload, exponent
  and width metadata per block) plus fp32 biases, against the same weights in
  uniform ``baseline_bits`` BFP; other parameters (BatchNorm) are equal in both and
  left out.

Width products are summed exactly, not estimated from mean widths: for one sample the
sum over all MACs of m_w * m_a is the convolution of the weight width map with the
activation width map (and the gradient products are the matching transposed
convolution and im2col sums), so the cost follows the actual block maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from cimflow.compress.dynasty.params import CostParams

PHASES = ("forward", "grad_input", "grad_weight")
BACKWARD_PHASES = ("grad_input", "grad_weight")


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

    @property
    def maps(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.weight, self.activation, self.gradient

    def filled(self, width: float) -> OperandWidths:
        """The same operands with every entry at ``width`` (e.g. the uniform baseline)."""
        return OperandWidths(*(torch.full_like(t, width) for t in self.maps),
                             self.weight_blocks, self.activation_blocks, self.gradient_blocks)

    def bricks(self, brick_bits: int) -> OperandWidths:
        """The same operands counted in bricks, ceil(width / brick_bits) per entry."""
        return OperandWidths(*(torch.ceil(t / brick_bits) for t in self.maps),
                             self.weight_blocks, self.activation_blocks, self.gradient_blocks)


def reblock(widths: Tensor, block_size: int, dim: int = -1) -> Tensor:
    """Each entry's width once ``widths`` is cut into runs of ``block_size`` along ``dim`` (the last
    run shorter): its run's widest member's, as a new block shares one width. Runs of 1 change nothing."""
    if block_size == 1:
        return widths
    dim %= widths.dim()
    length = widths.shape[dim]
    padding = [0, 0] * (widths.dim() - 1 - dim) + [0, -length % block_size]
    runs = F.pad(widths, padding).unflatten(dim, (-1, block_size))
    return runs.amax(dim + 1, keepdim=True).expand_as(runs).flatten(dim, dim + 1).narrow(dim, 0, length)


def grad_input_weight(geom: LayerGeometry, weight: Tensor, block_size: int) -> Tensor:
    """The weight map as grad_input reads it: re-blocked along output channels (conv: per input
    channel, over (tap, output channel) with the channel fastest, within its group)."""
    if not geom.is_conv:
        return reblock(weight, block_size, dim=0)
    out, per_group, kh, kw = weight.shape
    grouped = weight.reshape(geom.groups, out // geom.groups, per_group, kh, kw).permute(0, 2, 3, 4, 1)
    rows = reblock(grouped.reshape(geom.groups * per_group, -1), block_size)
    return rows.reshape(grouped.shape).permute(0, 4, 1, 2, 3).reshape(weight.shape)


def _conv_grad_weight(geom: LayerGeometry, activation: Tensor, gradient: Tensor, block_size: int) -> float:
    """Sum of G x im2col(A) width products, both re-blocked along one sample's output positions.

    The sum over (o, c, tap, p) of G'[o, p] A'[(c, tap), p] factors per position into
    (sum over o) x (sum over (c, tap)) within each group, so no GEMM is needed.
    """
    unfold = dict(kernel_size=geom.weight_shape[2:], dilation=geom.dilation, padding=geom.padding,
                  stride=geom.stride)
    valid = F.unfold(torch.ones_like(activation)[None], **unfold)[0]  # [C * taps, L]; 0 at padding
    cols = reblock(F.unfold(activation[None], **unfold)[0], block_size) * valid
    rows = reblock(gradient.reshape(gradient.shape[0], -1), block_size)  # [O, L]
    length = rows.shape[1]
    per_group = (t.reshape(geom.groups, -1, length).sum(1) for t in (rows, cols))
    return float(torch.mul(*per_group).sum())


def width_products(geom: LayerGeometry, weight: Tensor, activation: Tensor, gradient: Tensor,
                   reblock_size: int = 1) -> dict[str, float]:
    """Sum over one sample's MACs of the two operand widths, per phase (exact).

    Arguments are per-entry width maps in the layer's tensor layouts (one sample for
    activation and gradient); all-ones maps count the MACs, brick-count maps give brick
    products. The backward GEMMs see their operands re-blocked in runs of
    ``reblock_size`` along their own reduction axes (module docstring); 1 keeps every
    entry's stored width (the entrywise model).
    """
    wt, act, grad = (t.to(torch.float64) for t in (weight, activation, gradient))
    grad_input_wt = grad_input_weight(geom, wt, reblock_size)
    if geom.is_conv:
        conv = dict(stride=geom.stride, padding=geom.padding, dilation=geom.dilation, groups=geom.groups)
        products = {
            "forward": F.conv2d(act[None], wt, None, **conv).sum(),
            "grad_input": torch.nn.grad.conv2d_input((1, *geom.input_shape), grad_input_wt, grad[None], **conv).sum(),
            "grad_weight": _conv_grad_weight(geom, act, grad, reblock_size),
        }
    else:
        products = {"forward": (wt @ act).sum(), "grad_input": (grad @ grad_input_wt).sum(),
                    "grad_weight": grad.sum() * act.sum()}
    return {phase: float(products[phase]) for phase in geom.phases}


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
GRANULARITIES = {"bit": "", "brick": "_brick"}  # MAC granularity -> suffix of its table columns
METRICS = ("macs", "mac_bit_products", "mac_brick_products", "entrywise_mac_bit_products",
           "entrywise_mac_brick_products", "baseline_mac_bit_products", "baseline_mac_brick_products",
           "bits_moved", "baseline_bits_moved", "metadata_bits")


def _traffic(phase: str, bits: dict[str, float]) -> tuple[float, float]:
    """(bits per step, bits per sample) a phase reads: weights once per step, the rest per sample."""
    ops = PHASE_OPERANDS[phase]
    return (sum(bits[op] for op in ops if op == "weight"), sum(bits[op] for op in ops if op != "weight"))


def weight_storage_bits(block_sizes: Tensor, bits: Tensor, bits_per_block: int) -> float:
    """Bits to store one BFP tensor: each real entry at its block's width plus per-block overhead."""
    return float(block_sizes.double() @ bits.double()) + len(block_sizes) * bits_per_block


class CostMeter:
    """Accumulates modeled cost over the steps actually trained, per layer and phase.

    The reference is the same run with every block at ``baseline_bits`` and no width
    metadata, so a uniform baseline map gives exactly 1.0 at both granularities.
    ``block_size`` is the size of the blocks the backward GEMMs re-form.
    """

    def __init__(self, geometries: list[LayerGeometry], cost: CostParams, metadata_bits: int,
                 block_size: int) -> None:
        self.geometries = geometries
        self.cost = cost
        self.metadata_bits = metadata_bits
        self.block_size = block_size
        b = cost.baseline_bits
        self.baseline_mac = {"bit": b * b, "brick": math.ceil(b / cost.brick_bits) ** 2}  # per MAC, per granularity
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
            products = self._products(geom, w)
            moved = operand_bits(w, exponent + self.metadata_bits)
            baseline_moved = operand_bits(w.filled(float(b)), exponent)
            metadata = operand_bits(w.filled(0.0), self.metadata_bits)
            for phase in geom.phases:
                self._rates[(geom.name, phase)] = {
                    "macs": (0.0, macs[phase]),
                    **{metric: (0.0, per_phase[phase]) for metric, per_phase in products.items()},
                    **{f"baseline_mac_{g}_products": (0.0, macs[phase] * per_mac)
                       for g, per_mac in self.baseline_mac.items()},
                    "bits_moved": _traffic(phase, moved),
                    "baseline_bits_moved": _traffic(phase, baseline_moved),
                    "metadata_bits": _traffic(phase, metadata),
                }

    def _products(self, geom: LayerGeometry, w: OperandWidths) -> dict[str, dict[str, float]]:
        """Width and brick products per phase: charged (backward re-blocked) and entrywise (for the record)."""
        maps = {"bit": w.maps, "brick": w.bricks(self.cost.brick_bits).maps}
        products = {}
        for granularity, operands in maps.items():
            products[f"mac_{granularity}_products"] = width_products(geom, *operands, self.block_size)
            products[f"entrywise_mac_{granularity}_products"] = width_products(geom, *operands)
        return products

    def add_step(self, batch_size: int) -> None:
        """Charge one training step of ``batch_size`` samples at the installed maps."""
        for key, rates in self._rates.items():
            for metric, (per_step, per_sample) in rates.items():
                self.totals[metric][key] += per_step + batch_size * per_sample

    def table(self) -> pd.DataFrame:
        """Rows per layer and phase plus a ``total``/``all`` row, with relative time and energy.

        Unsuffixed time and energy columns are bit-exact, ``_brick`` ones brick-granular.
        The baseline's energy is the same under both: each of its MACs is one b x b MAC.
        """
        frame = pd.DataFrame([{"layer": layer, "phase": phase, **{m: self.totals[m][(layer, phase)] for m in METRICS}}
                              for layer, phase in self.keys])
        total = {"layer": "total", "phase": "all", **frame[list(METRICS)].sum().to_dict()}
        frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
        frame["memory_energy_pj"] = self.cost.memory_energy_pj_per_bit * frame["bits_moved"]
        frame["baseline_energy_pj"] = (self._compute_energy(frame, "baseline_mac_bit_products", "bit")
                                       + self.cost.memory_energy_pj_per_bit * frame["baseline_bits_moved"])
        for granularity, suffix in GRANULARITIES.items():
            products = f"mac_{granularity}_products"
            frame[f"compute_energy_pj{suffix}"] = self._compute_energy(frame, products, granularity)
            frame[f"energy_pj{suffix}"] = frame[f"compute_energy_pj{suffix}"] + frame["memory_energy_pj"]
            frame[f"relative_time{suffix}"] = frame[products] / frame[f"baseline_{products}"]
            frame[f"relative_energy{suffix}"] = frame[f"energy_pj{suffix}"] / frame["baseline_energy_pj"]
        return frame

    def _compute_energy(self, frame: pd.DataFrame, products: str, granularity: str) -> pd.Series:
        """Compute energy in pJ: products counted in b x b MACs, each at mac_energy_pj."""
        return self.cost.mac_energy_pj * frame[products] / self.baseline_mac[granularity]

    def backward_reblock_ratios(self) -> dict[str, float]:
        """Charged (re-blocked) over entrywise backward products: what re-blocking adds to backward time."""
        backward = [key for key in self.keys if key[1] in BACKWARD_PHASES]

        def summed(metric: str) -> float:
            return sum(self.totals[metric][key] for key in backward)

        return {f"backward_reblock_time_ratio{suffix}": summed(f"mac_{g}_products")
                / summed(f"entrywise_mac_{g}_products") for g, suffix in GRANULARITIES.items()}
