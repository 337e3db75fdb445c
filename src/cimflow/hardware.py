"""Run an int8-exported model on the simulated CD-CiM macro.

:func:`attach_cim` turns the integer model of :mod:`cimflow.quantize` into one whose
conv/linear layers compute through :class:`cimflow.cim.CimMacro`: convolutions via
im2col, one input vector per output pixel. A layer followed directly by a ReLU uses the
macro's fused sign-first ReLU when its reduction length plus the bias rows fits in one
segment (the bias is added in the analog sum on spare rows, so ReLU sees ``acc + b``);
every other layer converts signed partial sums and adds bias and ReLU digitally.

Each layer's ADC full scale is set from calibration images (a percentile of its
partial sums), the analogue of the activation calibration of the int8 export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimflow.cim.config import MacroConfig
from cimflow.cim.energy import merge_counters
from cimflow.cim.mapping import MappedWeights
from cimflow.cim.simulator import CimMacro
from cimflow.quantize import QuantizedLayer, quantized_layers

ACT_CODE_MAX = 127


IM2COL_CHUNK_BYTES = 32 * 2**20
"""float32 unfold buffer per chunk of images: bounds the simulator's peak memory."""


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(layer: QuantizedLayer, x_codes: torch.Tensor) -> tuple[np.ndarray, tuple[int, ...]]:
    """Input vectors (B*L, K) as int8 plus the output shape to fold results back into.

    Unfolds a few images at a time so the float buffer stays small; codes are exact in
    float32, and the result is stored as int8 (what the macro's input drivers take)."""
    if layer.kind == "linear":
        return x_codes.to(torch.int8).numpy(), (x_codes.shape[0], layer.weight_q.shape[0])
    if layer.groups != 1:
        raise ValueError("grouped convolutions are not mapped onto the macro")
    m, c, kh, kw = layer.weight_q.shape
    n, k = x_codes.shape[0], c * kh * kw
    h_out, w_out = (_out_size(x_codes.shape[2 + i], (kh, kw)[i], layer.stride[i], layer.padding[i], layer.dilation[i])
                    for i in range(2))
    positions = h_out * w_out
    vectors = np.empty((n * positions, k), dtype=np.int8)
    chunk = max(1, IM2COL_CHUNK_BYTES // (4 * k * positions))
    for start in range(0, n, chunk):
        cols = F.unfold(x_codes[start : start + chunk].to(torch.float32), (kh, kw), dilation=layer.dilation,
                        padding=layer.padding, stride=layer.stride)
        stop = min(start + chunk, n)
        vectors[start * positions : stop * positions] = cols.transpose(1, 2).reshape(-1, k).to(torch.int8).numpy()
    return vectors, (n, h_out, w_out, m)


def fold_output(out: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    result = torch.from_numpy(out).reshape(shape)
    return result.permute(0, 3, 1, 2).contiguous() if len(shape) == 4 else result


def weight_matrix(layer: QuantizedLayer) -> np.ndarray:
    """Weight codes as the macro stores them: (K, M) int8."""
    return np.ascontiguousarray(layer.weight_q.reshape(layer.weight_q.shape[0], -1).T.numpy())


def bias_rows(layer: QuantizedLayer) -> tuple[np.ndarray, np.ndarray]:
    """Extra (inputs, weight rows) that add the bias, in integer-product units, exactly.

    b_int = round(b / (s_x s_w)) = 127 q + r: rows of input 127 carry q in weights of at
    most 127, and one row of input 1 carries the remainder r.
    """
    unit = (layer.input_scale.double() * layer.weight_scale.double()).numpy()
    b_int = np.round(layer.bias.double().numpy() / unit).astype(np.int64)
    sign, magnitude = np.sign(b_int), np.abs(b_int)
    q, r = magnitude // ACT_CODE_MAX, magnitude % ACT_CODE_MAX
    n_big = int(math.ceil(q.max() / ACT_CODE_MAX)) if q.any() else 0
    rows = [sign * np.clip(q - ACT_CODE_MAX * i, 0, ACT_CODE_MAX) for i in range(n_big)]
    weights = np.stack([*rows, sign * r]).astype(np.int8)
    inputs = np.array([ACT_CODE_MAX] * n_big + [1], dtype=np.int8)
    return inputs, weights


@dataclass
class LayerPlan:
    """How one layer sits on the macro."""

    name: str
    fused: bool
    full_scale: float
    mapped: MappedWeights
    bias_inputs: np.ndarray | None
    index: int
    counters: dict[str, float] = field(default_factory=dict)


class CimEngine:
    """Engine for QuantizedLayer that simulates the macro and accumulates counters."""

    def __init__(self, macro: CimMacro, plans: dict[str, LayerPlan], noise: bool, noise_seed: int) -> None:
        self.macro, self.plans, self.noise, self.noise_seed = macro, plans, noise, noise_seed
        self.calls = 0

    def __call__(self, layer: QuantizedLayer, x_codes: torch.Tensor) -> torch.Tensor:
        plan = self.plans[id(layer)]
        vectors, shape = im2col(layer, x_codes)
        if plan.fused:
            vectors = np.concatenate([vectors, np.broadcast_to(plan.bias_inputs, (len(vectors), len(plan.bias_inputs)))], 1)
        seed = (self.noise_seed * 1_000_003 + plan.index * 10_007 + self.calls) % 2**31
        self.calls += 1
        out, counts = self.macro.matmul(vectors, plan.mapped, plan.full_scale, relu=plan.fused, noise=self.noise,
                                        rng_seed=seed)
        plan.counters = merge_counters(plan.counters, counts)
        acc = fold_output(out, shape)
        return acc * layer.output_scale() if plan.fused else layer.dequantize(acc)


def layer_partial_sums(layer: QuantizedLayer, x_codes: torch.Tensor, rows: int, limit: int) -> np.ndarray:
    """|partial sums| per segment of up to ``limit`` input vectors (for the ADC range)."""
    vectors, _ = im2col(layer, x_codes)
    vectors = vectors[:: max(1, len(vectors) // limit)].astype(np.float64)
    w = weight_matrix(layer).astype(np.float64)
    sums = [vectors[:, lo : lo + rows] @ w[lo : lo + rows] for lo in range(0, w.shape[0], rows)]
    return np.abs(np.concatenate([s.ravel() for s in sums]))


@torch.no_grad()
def full_scales(qmodel: nn.Module, batches: list[torch.Tensor], rows: int, percentile: float) -> dict[str, float]:
    """Per-layer ADC range: the given percentile of |partial sum| on calibration images."""
    captured: dict[str, list[np.ndarray]] = {}
    originals = {}
    for name, layer in quantized_layers(qmodel):
        originals[name] = layer.engine

        def spy(lyr: QuantizedLayer, x: torch.Tensor, name: str = name) -> torch.Tensor:
            captured.setdefault(name, []).append(layer_partial_sums(lyr, x, rows, 20_000))
            return originals[name](lyr, x)

        layer.engine = spy
    try:
        for x in batches:
            qmodel(x)
    finally:
        for name, layer in quantized_layers(qmodel):
            layer.engine = originals[name]
    return {name: max(float(np.percentile(np.concatenate(parts), percentile)), 1.0)
            for name, parts in captured.items()}


def attach_cim(
    qmodel: nn.Module,
    macro: CimMacro,
    scales: dict[str, float],
    relu_follows: set[str],
    noise: bool,
    noise_seed: int,
) -> dict[str, LayerPlan]:
    """Route every quantized layer of ``qmodel`` through ``macro`` (in place)."""
    config: MacroConfig = macro.config
    plans: dict[str, LayerPlan] = {}
    engine = CimEngine(macro, {}, noise, noise_seed)
    for index, (name, layer) in enumerate(quantized_layers(qmodel)):
        w = weight_matrix(layer)
        bias_inputs, bias_weights = bias_rows(layer)
        fused = (name in relu_follows and config.fused_relu and w.shape[0] + len(bias_inputs) <= config.rows)
        if fused:
            w = np.concatenate([w, bias_weights], 0)
        plan = LayerPlan(name, fused, scales[name], macro.map_weights(w), bias_inputs if fused else None, index)
        plans[name] = plan
        engine.plans[id(layer)] = plan
        layer.engine = engine
    return plans


def total_counters(plans: dict[str, LayerPlan]) -> dict[str, float]:
    return merge_counters(*(p.counters for p in plans.values()))
