"""Run an int8-exported model on the simulated CD-CiM macro.

:func:`attach_cim` turns the integer model of :mod:`cimflow.quantize` into one whose
conv/linear layers compute through :class:`cimflow.cim.CimMacro`: convolutions via
im2col, one input vector per output pixel. How each layer sits on the macro is its
:class:`LayerLayout`, decided by :func:`layout_layer` from the mapping policy
(``cim.mapping``):

* A layer followed directly by a ReLU runs the macro's fused sign-first ReLU when each
  output is one conversion (K fits one segment, or the segments are accumulated on the
  hold capacitor) and the bias can enter before the sign decision: at the bias DAC of
  the comparator/SAR reference (``bias: reference``, the default) or on spare rows of
  the sum (``bias: rows``). Every other layer converts signed values and adds bias and
  ReLU digitally (exact, part of requantization).
* A fused channel whose bias is below minus the largest |acc| its weights can produce
  outputs 0 for every input: its column is skipped (an exact clamp, no conversion).

Each layer's ADC full scale is set from calibration images: a percentile of |what is
converted| (partial sums per segment, the held sum, plus the bias where it enters the
conversion; for a fused ReLU only the positive values, since a negative one stops after
the sign), per layer or per segment. It is the analogue of the activation calibration
of the int8 export.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from cimflow.cim.config import MacroConfig, MappingPolicy
from cimflow.cim.energy import merge_counters
from cimflow.cim.kernels import ConvWindows
from cimflow.cim.mapping import MappedWeights, segment_bounds
from cimflow.cim.simulator import CimMacro
from cimflow.quantize import QuantizedLayer, quantized_layers

ACT_CODE_MAX = 127


def input_vectors(layer: QuantizedLayer, x_codes: torch.Tensor) -> tuple[np.ndarray | ConvWindows, tuple[int, ...]]:
    """The layer's input vectors as the macro's input drivers take them (int8 rows, or a
    convolution's windows, gathered by the compiled pass) plus the output shape to fold
    results back into."""
    if layer.kind == "linear":
        return x_codes.to(torch.int8).numpy(), (x_codes.shape[0], layer.weight_q.shape[0])
    if layer.groups != 1:
        raise ValueError("grouped convolutions are not mapped onto the macro")
    m, _, kh, kw = layer.weight_q.shape
    windows = ConvWindows(x_codes.to(torch.int8).numpy(), (kh, kw), layer.stride, layer.padding, layer.dilation)
    h_out, w_out = windows.output_size
    return windows, (x_codes.shape[0], h_out, w_out, m)


def im2col(layer: QuantizedLayer, x_codes: torch.Tensor) -> tuple[np.ndarray, tuple[int, ...]]:
    """:func:`input_vectors` as an int8 (B*L, K) matrix."""
    vectors, shape = input_vectors(layer, x_codes)
    return (vectors.materialize() if isinstance(vectors, ConvWindows) else vectors), shape


def weight_matrix(layer: QuantizedLayer) -> np.ndarray:
    """Weight codes as the macro stores them: (K, M) int8."""
    return np.ascontiguousarray(layer.weight_q.reshape(layer.weight_q.shape[0], -1).T.numpy())


def integer_bias(layer: QuantizedLayer) -> np.ndarray:
    """(M,) float64 bias in integer-product units, b / (s_x s_w)."""
    return (layer.bias.double() / (layer.input_scale.double() * layer.weight_scale.double())).numpy()


def bias_rows(layer: QuantizedLayer) -> tuple[np.ndarray, np.ndarray]:
    """Extra (inputs, weight rows) that add the bias, in integer-product units, exactly.

    b_int = round(b / (s_x s_w)) = 127 q + r: rows of input 127 carry q in weights of at
    most 127, and one row of input 1 carries the remainder r.
    """
    b_int = np.round(integer_bias(layer)).astype(np.int64)
    sign, magnitude = np.sign(b_int), np.abs(b_int)
    q, r = magnitude // ACT_CODE_MAX, magnitude % ACT_CODE_MAX
    n_big = int(math.ceil(q.max() / ACT_CODE_MAX)) if q.any() else 0
    rows = [sign * np.clip(q - ACT_CODE_MAX * i, 0, ACT_CODE_MAX) for i in range(n_big)]
    weights = np.stack([*rows, sign * r]).astype(np.int8)
    inputs = np.array([ACT_CODE_MAX] * n_big + [1], dtype=np.int8)
    return inputs, weights


@dataclass(frozen=True)
class LayerLayout:
    """Where a layer's weights, bias and ReLU go on the macro (chip-independent)."""

    weights: np.ndarray
    """(K', M) int8 as stored: the layer's weights, plus bias rows with ``bias: rows``."""
    fused: bool
    bias_inputs: np.ndarray | None
    """Inputs of the bias rows, appended to every input vector (``bias: rows``, fused)."""
    reference_bias: np.ndarray | None
    """(M,) integer-product units for the bias DAC (``bias: reference``, fused)."""
    bounds: list[tuple[int, int]]
    accumulation: str
    dead_columns: int
    """Fused channels whose output is 0 for every input: skipped, no conversion."""

    @property
    def conversion_steps(self) -> int:
        return 1 if self.accumulation == "analog" else len(self.bounds)


def layout_layer(layer: QuantizedLayer, config: MacroConfig, policy: MappingPolicy, relu: bool) -> LayerLayout:
    """Decide fused ReLU, bias placement and segments for one layer under ``policy``."""
    w = weight_matrix(layer)
    analog = policy.accumulation == "analog"
    wants_fused = relu and config.fused_relu and policy.bias != "digital"
    bias_inputs = reference_bias = None
    dead = 0
    if wants_fused and policy.bias == "rows":
        inputs, rows = bias_rows(layer)
        if analog or w.shape[0] + len(inputs) <= config.rows:
            w, bias_inputs = np.concatenate([w, rows], 0), inputs
    elif wants_fused and (analog or w.shape[0] <= config.rows):
        b = integer_bias(layer)
        reach = 128.0 * np.abs(w.astype(np.float64)).sum(axis=0)  # largest |acc| any int8 input gives
        dead_mask = b <= -reach
        dead = int(dead_mask.sum())
        w = np.where(dead_mask[None, :], 0, w).astype(np.int8)
        reference_bias = np.where(dead_mask, 0.0, b)
    fused = bias_inputs is not None or reference_bias is not None
    return LayerLayout(
        weights=np.ascontiguousarray(w), fused=fused, bias_inputs=bias_inputs, reference_bias=reference_bias,
        bounds=segment_bounds(w.shape[0], config.rows, policy.segmenting), accumulation=policy.accumulation,
        dead_columns=dead,
    )


def converted_values(layout: LayerLayout, vectors: np.ndarray) -> list[np.ndarray]:
    """Ideal values the ADC converts for int8 input ``vectors``, one array per conversion step.

    A fused conversion's negative values stop after the sign, so only positives are kept.
    """
    x = vectors.astype(np.float64)
    if layout.bias_inputs is not None:
        x = np.concatenate([x, np.broadcast_to(layout.bias_inputs.astype(np.float64), (len(x), len(layout.bias_inputs)))], 1)
    w = layout.weights.astype(np.float64)
    parts = [x[:, lo:hi] @ w[lo:hi] for lo, hi in layout.bounds]
    steps = [sum(parts)] if layout.accumulation == "analog" else parts
    if layout.reference_bias is not None:
        steps = [steps[0] + layout.reference_bias]
    if layout.fused:
        return [v[v > 0] for v in steps]
    return [np.abs(v).ravel() for v in steps]


@dataclass
class LayerPlan:
    """How one layer sits on one chip: its layout, ADC ranges and mapped weights."""

    name: str
    layout: LayerLayout
    full_scales: list[float]
    mapped: MappedWeights
    index: int
    bias_saturated_columns: int
    """Columns whose bias the DAC clips (reported; the conversion then sees the clipped bias)."""
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def fused(self) -> bool:
        return self.layout.fused


class CimEngine:
    """Engine for QuantizedLayer that simulates the macro and accumulates counters."""

    def __init__(self, macro: CimMacro, plans: dict[int, LayerPlan], noise: bool, noise_seed: int) -> None:
        self.macro, self.plans, self.noise, self.noise_seed = macro, plans, noise, noise_seed
        self.calls = 0

    def __call__(self, layer: QuantizedLayer, x_codes: torch.Tensor) -> torch.Tensor:
        plan = self.plans[id(layer)]
        layout = plan.layout
        vectors, shape = (im2col if layout.bias_inputs is not None else input_vectors)(layer, x_codes)
        if layout.bias_inputs is not None:
            extra = np.broadcast_to(layout.bias_inputs, (len(vectors), len(layout.bias_inputs)))
            vectors = np.concatenate([vectors, extra], 1)
        seed = (self.noise_seed * 1_000_003 + plan.index * 10_007 + self.calls) % 2**31
        self.calls += 1
        out, counts = self.macro.matmul(vectors, plan.mapped, np.asarray(plan.full_scales), relu=layout.fused,
                                        noise=self.noise, rng_seed=seed, bias=layout.reference_bias)
        plan.counters = merge_counters(plan.counters, counts)
        return layer.dequantize_rows(out, shape, with_bias=not layout.fused)


@torch.no_grad()
def full_scales(
    qmodel: nn.Module,
    batches: list[torch.Tensor],
    config: MacroConfig,
    policy: MappingPolicy,
    relu_follows: set[str],
    percentile: float,
    limit: int = 20_000,
) -> dict[str, list[float]]:
    """Per-layer ADC ranges (one per conversion step, or one repeated with ``per_layer``):
    the given percentile of what is converted, on calibration images (up to ``limit``
    input vectors per layer and batch)."""
    captured: dict[str, list[list[np.ndarray]]] = {}
    layouts = {name: layout_layer(layer, config, policy, name in relu_follows) for name, layer in quantized_layers(qmodel)}
    originals = {}
    for name, layer in quantized_layers(qmodel):
        originals[name] = layer.engine

        def spy(lyr: QuantizedLayer, x: torch.Tensor, name: str = name) -> torch.Tensor:
            vectors, _ = im2col(lyr, x)
            captured.setdefault(name, []).append(converted_values(layouts[name], vectors[:: max(1, len(vectors) // limit)]))
            return originals[name](lyr, x)

        layer.engine = spy
    try:
        for x in batches:
            qmodel(x)
    finally:
        for name, layer in quantized_layers(qmodel):
            layer.engine = originals[name]
    scales = {}
    for name, per_batch in captured.items():
        steps = [np.concatenate(parts) for parts in zip(*per_batch)]
        if policy.full_scale == "per_layer":
            steps = [np.concatenate(steps)] * len(steps)
        scales[name] = [max(float(np.percentile(v, percentile)), 1.0) if v.size else 1.0 for v in steps]
    return scales


def attach_cim(
    qmodel: nn.Module,
    macro: CimMacro,
    scales: dict[str, list[float]],
    relu_follows: set[str],
    policy: MappingPolicy,
    noise: bool,
    noise_seed: int,
) -> dict[str, LayerPlan]:
    """Route every quantized layer of ``qmodel`` through ``macro`` (in place)."""
    plans: dict[str, LayerPlan] = {}
    engine = CimEngine(macro, {}, noise, noise_seed)
    for index, (name, layer) in enumerate(quantized_layers(qmodel)):
        layout = layout_layer(layer, macro.config, policy, name in relu_follows)
        if len(scales[name]) != layout.conversion_steps:
            raise ValueError(f"layer {name}: {len(scales[name])} full scales for {layout.conversion_steps} "
                             "conversion steps; map the model again with this macro and policy")
        mapped = macro.map_weights(layout.weights, policy.segmenting, policy.accumulation)
        saturated = 0 if layout.reference_bias is None else macro.bias_saturation(layout.reference_bias,
                                                                                    scales[name][0])
        plan = LayerPlan(name, layout, list(scales[name]), mapped, index, saturated)
        plans[name] = plan
        engine.plans[id(layer)] = plan
        layer.engine = engine
    return plans


def total_counters(plans: dict[str, LayerPlan]) -> dict[str, float]:
    return merge_counters(*(p.counters for p in plans.values()))
