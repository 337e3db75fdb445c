"""Post-training integer export in the form the CD-CiM hardware stage consumes.

Each Conv2d/Linear becomes a :class:`QuantizedLayer` holding signed integer weight
codes (per-output-channel symmetric scales), a per-tensor symmetric input scale
calibrated on training images, and a float bias. BatchNorm is folded into the
preceding convolution first, as an accelerator would. The integer products are
computed by a pluggable *engine*: exact digital arithmetic by default, the CiM
simulator when mapped onto the macro.

File layout (safetensors): ``<layer>.weight_q`` int8, ``<layer>.weight_scale`` f32
[out], ``<layer>.input_scale`` f32 [1], ``<layer>.bias`` f32 [out]; metadata holds the
float model's spec and a JSON list of layers with their geometry and weight width.

A compression method that already put a layer on an integer grid (ADMM quantization
or binarization) hands its codes over as :class:`LayerCodes` (file format
``cimflow-quantized-v2``, :func:`save_codes` / :func:`load_codes`). The export then
keeps those codes instead of re-quantizing the float weights, so the integer model is
exactly the method's model and records the layer's real width.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimflow import _requantize
from cimflow.artifacts import ArtifactError, load_tensors, save_tensors
from cimflow.graph import FoldError, batchnorm_pairs
from cimflow.modelio import ModelSpec

INT8_FORMAT = "cimflow-int8-v1"
CODES_FORMAT = "cimflow-quantized-v2"

Engine = Callable[["QuantizedLayer", torch.Tensor], torch.Tensor]
"""Maps a layer and its integer input codes (float32, exact) to its float32 output."""


def _code_range_error(codes: np.ndarray, bits: int) -> str | None:
    """Why ``codes`` cannot be ``bits``-bit weight codes, or None if they can.

    b >= 2 bits hold -(2^(b-1)-1)..2^(b-1)-1 with 0 for pruned weights; 1 bit holds only
    the two signs binarization produces (there is no room for a pruned 0)."""
    if not 1 <= bits <= 8:
        return f"bits={bits} is not in 1..8"
    if codes.dtype != np.int8:
        return f"codes are {codes.dtype}, not int8"
    magnitude = np.abs(codes.astype(np.int16))
    if bits == 1:
        bad = magnitude != 1
        allowed = "-1 or +1"
    else:
        bad = magnitude > 2 ** (bits - 1) - 1
        allowed = f"within +-{2 ** (bits - 1) - 1}"
    if bad.any():
        return f"code {int(codes.flat[int(np.argmax(bad))])} is not {allowed} (bits={bits})"
    return None


@dataclass(frozen=True, eq=False)
class LayerCodes:
    """A layer as a compression method left it: weight = codes * scale, codes at ``bits``."""

    codes: np.ndarray
    scale: float
    bits: int

    def __post_init__(self) -> None:
        problem = _code_range_error(self.codes, self.bits)
        if problem is None and not (math.isfinite(self.scale) and self.scale > 0):
            problem = f"scale {self.scale} is not a positive finite number"
        if problem is None and float(np.float32(self.scale)) != self.scale:
            problem = f"scale {self.scale!r} is not a float32 value, so codes * scale is not exact in float32"
        if problem is not None:
            raise ValueError(problem)


def save_codes(path: str | os.PathLike, codes: Mapping[str, np.ndarray], scales: Mapping[str, float],
               bits: Mapping[str, int]) -> None:
    """Write per-layer integer codes, float32 scales and widths (validated first)."""
    if not codes.keys() == scales.keys() == bits.keys():
        raise ValueError(f"codes, scales and bits name different layers: {sorted(codes)}, {sorted(scales)}, "
                         f"{sorted(bits)}")
    for name in codes:
        try:
            LayerCodes(np.asarray(codes[name]), float(scales[name]), int(bits[name]))
        except ValueError as exc:
            raise ValueError(f"{path}: layer {name}: {exc}") from exc
    tensors = {f"{name}.codes": np.asarray(c) for name, c in codes.items()}
    tensors |= {f"{name}.scale": np.array([s], dtype=np.float32) for name, s in scales.items()}
    meta = {"format": CODES_FORMAT, "bits": json.dumps({n: int(b) for n, b in bits.items()}, sort_keys=True)}
    save_tensors(path, tensors, meta)


def load_codes(path: str | os.PathLike) -> dict[str, LayerCodes]:
    """Read a codes file; anything malformed raises ArtifactError naming the file and layer."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != CODES_FORMAT:
        raise ArtifactError(f"{path}: not a cimflow codes file (format={meta.get('format')!r}, "
                            f"expected {CODES_FORMAT!r})")
    try:
        bits = json.loads(meta["bits"])
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: per-layer bits missing or not JSON ({exc!r})") from exc
    if not isinstance(bits, dict):
        raise ArtifactError(f"{path}: per-layer bits are not a JSON object ({bits!r})")
    names = bits.keys() | {key.rpartition(".")[0] for key in tensors}
    return {name: _layer_codes(path, name, tensors, bits.get(name)) for name in sorted(names)}


def _layer_codes(path: str | os.PathLike, name: str, tensors: Mapping[str, np.ndarray], bits: object) -> LayerCodes:
    for key in (f"{name}.codes", f"{name}.scale"):
        if key not in tensors:
            raise ArtifactError(f"{path}: layer {name}: tensor {key} missing")
    codes, scale = tensors[f"{name}.codes"], tensors[f"{name}.scale"]
    if scale.dtype != np.float32 or scale.shape != (1,) or not isinstance(bits, int):
        raise ArtifactError(f"{path}: layer {name}: scale must be float32[1] and bits an integer "
                            f"(got {scale.dtype}{list(scale.shape)}, bits={bits!r})")
    try:
        return LayerCodes(codes, float(scale[0]), bits)
    except ValueError as exc:
        raise ArtifactError(f"{path}: layer {name}: {exc}") from exc


FLOAT32_EXACT = 2**24
"""float32 holds every integer below this exactly, so integer sums below it are exact."""


def exact_engine(layer: QuantizedLayer, x_codes: torch.Tensor) -> torch.Tensor:
    """Integer accumulation, exact: one float32 convolution when no partial sum can reach
    2**24 (K <= 1032 at 8 bits), else float32 ones over input-channel chunks that short,
    summed in float64 (the result's dtype says which). About twice as fast as float64
    convolutions and bit-identical to them."""
    if layer.kind == "conv" and layer.groups != 1:
        return _integer_op(layer, x_codes.double(), layer.weight_q.double())
    w = layer.weight_q.to(torch.float32)
    x = x_codes.to(torch.float32)
    per_term = layer.act_qmax * max(int(layer.weight_q.abs().max()), 1)
    taps = w[0, 0].numel() if layer.kind == "conv" else 1
    step = max(1, (FLOAT32_EXACT - 1) // (per_term * taps))
    channels = w.shape[1]
    if step >= channels:
        return _integer_op(layer, x, w)
    total = None
    for start in range(0, channels, step):
        part = _integer_op(layer, x[:, start : start + step], w[:, start : start + step]).double()
        total = part if total is None else total + part
    return total


def _integer_op(layer: QuantizedLayer, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if layer.kind == "conv":
        return F.conv2d(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, w)


def digital_engine(layer: QuantizedLayer, x_codes: torch.Tensor) -> torch.Tensor:
    """The int8 accelerator's reference: exact accumulation, then scale and bias."""
    return layer.dequantize(exact_engine(layer, x_codes))


class QuantizedLayer(nn.Module):
    """A conv or linear layer in integer form: y = s_x * s_w[c] * sum(q_x * q_w) + b."""

    def __init__(self, source: nn.Conv2d | nn.Linear, weight_bits: int, activation_bits: int) -> None:
        super().__init__()
        self.kind = "conv" if isinstance(source, nn.Conv2d) else "linear"
        if self.kind == "conv":
            self.stride, self.padding = tuple(source.stride), tuple(source.padding)
            self.dilation, self.groups = tuple(source.dilation), source.groups
        self.weight_bits, self.activation_bits = weight_bits, activation_bits
        out = source.weight.shape[0]
        self.register_buffer("weight_q", torch.zeros_like(source.weight, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out))
        self.register_buffer("input_scale", torch.ones(1))
        self.register_buffer("bias", torch.zeros(out))
        self.engine: Engine = digital_engine

    @property
    def act_qmax(self) -> int:
        return 2 ** (self.activation_bits - 1) - 1

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """round(x / s_x) in float64, clamped to the code range: the codes as float32
        (exact), in one compiled pass over the activations."""
        x = x.detach().to(torch.float32).contiguous()
        codes = torch.empty_like(x)
        _requantize.quantize_codes(x.view(-1).numpy(), float(self.input_scale), float(self.act_qmax),
                                   codes.view(-1).numpy(), torch.get_num_threads())
        return codes

    def _per_channel(self, values: torch.Tensor) -> torch.Tensor:
        return values.double().view((1, -1, 1, 1) if self.kind == "conv" else (1, -1))

    def output_scale(self) -> torch.Tensor:
        """Float value of one integer-product unit, per output channel (broadcastable)."""
        return self._per_channel(self.input_scale * self.weight_scale)

    def dequantize(self, acc: torch.Tensor) -> torch.Tensor:
        """s_x s_w acc + b in float64, rounded once to float32, for channel-major integer
        sums (float32 or float64, exact); a float32 ``acc`` is overwritten."""
        acc = acc.contiguous()
        planes = acc.view(acc.shape[0], acc.shape[1], -1)
        out = planes if acc.dtype == torch.float32 else torch.empty(planes.shape, dtype=torch.float32)
        _requantize.dequantize_planes(planes.numpy(), self.output_scale().reshape(-1).numpy(),
                                      self.bias.double().numpy(), out.numpy(), torch.get_num_threads())
        return out.view(acc.shape)

    def dequantize_rows(self, acc: np.ndarray, shape: tuple[int, ...], with_bias: bool) -> torch.Tensor:
        """The macro's float64 (B*L, M) results as the layer's float32 output (B, M, H, W) or
        (B, M), with the arithmetic of :meth:`dequantize` (the bias left out where the
        chip already added it)."""
        batch, channels = shape[0], shape[-1]
        out = torch.empty((batch, channels, math.prod(shape[1:-1])), dtype=torch.float32)
        bias = self.bias.double() if with_bias else torch.zeros(channels, dtype=torch.float64)
        _requantize.dequantize_rows(acc, self.output_scale().reshape(-1).numpy(), bias.numpy(), out.numpy(),
                                    torch.get_num_threads())
        return out.view(batch, channels, *shape[1:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.engine(self, self.quantize_input(x)).to(x.dtype)

    def geometry(self) -> dict:
        info = {"kind": self.kind, "shape": list(self.weight_q.shape)}
        if self.kind == "conv":
            info |= {"stride": list(self.stride), "padding": list(self.padding),
                     "dilation": list(self.dilation), "groups": self.groups}
        return info


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the conv/linear whose output it alone consumes, in place.

    The pairs come from the model's graph (:func:`cimflow.graph.batchnorm_pairs`), so a
    BN after a ReLU, a pooling or a shared output is refused with the layers named
    rather than folded wrong. Exact for any gain sign: y = gain_c (W x + b - mean_c) + beta_c."""
    modules = dict(model.named_modules())
    for layer_name, bn_name in batchnorm_pairs(model):
        layer, bn = modules[layer_name], modules[bn_name]
        if bn.running_var is None:
            raise FoldError(f"cannot fold {bn_name}: it tracks no running statistics")
        with torch.no_grad():
            gain = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                gain = gain * bn.weight
            shift = bn.bias if bn.bias is not None else torch.zeros_like(gain)
            bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
            if isinstance(layer, nn.Conv2d):
                folded = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                   layer.padding, layer.dilation, layer.groups, bias=True,
                                   padding_mode=layer.padding_mode)
            else:
                folded = nn.Linear(layer.in_features, layer.out_features, bias=True)
            folded.weight.copy_(layer.weight * gain.view(-1, *([1] * (layer.weight.ndim - 1))))
            folded.bias.copy_((bias - bn.running_mean) * gain + shift)
        _replace(model, layer_name, folded)
        _replace(model, bn_name, nn.Identity())
    return model


def _quantizable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


@torch.no_grad()
def calibrate_input_ranges(model: nn.Module, batches: list[torch.Tensor], percentile: float) -> dict[str, float]:
    """Per-layer clip value: the given percentile of |input| over the calibration images."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = [
        m.register_forward_pre_hook(lambda mod, args, n=n: seen.setdefault(n, []).append(args[0].abs().flatten()))
        for n, m in _quantizable(model)
    ]
    model.eval()
    for x in batches:
        model(x)
    for h in handles:
        h.remove()
    ranges = {}
    for name, chunks in seen.items():
        values = torch.cat(chunks).double()
        clip = torch.quantile(values[:: max(1, values.numel() // 2_000_000)], percentile / 100.0).item()
        ranges[name] = clip if clip > 0 else 1.0
    return ranges


def _max_abs_codes(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric codes with scale max|w_c| / (2^(b-1)-1) (1 for a zero channel)."""
    w_qmax = 2 ** (bits - 1) - 1
    w = weight.detach().double()
    max_abs = w.abs().flatten(1).amax(1)
    scale = torch.where(max_abs > 0, max_abs / w_qmax, torch.ones_like(max_abs))
    shape = (-1,) + (1,) * (w.ndim - 1)
    return torch.round(w / scale.view(shape)).clamp(-w_qmax, w_qmax).to(torch.int8), scale.float()


def _fixed_channel_scales(name: str, weight: torch.Tensor, fixed: LayerCodes) -> tuple[torch.Tensor, torch.Tensor]:
    """The method's codes and per-channel scales that reproduce ``weight`` (possibly BN-folded).

    A channel that is exactly the method's float32 levels (codes * q, rounded as
    projections.dequantize rounds it) keeps q, so dequantizing in float32 gives the
    float weights bit for bit. A folded channel is gain_c * code * q, so its scale is
    the least-squares fit <w_c, code_c> / <code_c, code_c>. Scales stay positive, as
    the max-abs export's do (the CiM fused ReLU multiplies relu(acc + b) by the scale):
    a channel whose gain is negative keeps its code magnitudes with the sign flipped.
    Every weight must be reproduced to float32 rounding; otherwise the float model
    and its codes disagree and this raises ArtifactError naming the layer.
    """
    if fixed.codes.shape != tuple(weight.shape):
        raise ArtifactError(f"layer {name}: codes have shape {list(fixed.codes.shape)}, "
                            f"the weight {list(weight.shape)}")
    w32 = weight.detach().flatten(1).float()
    w = w32.double()
    codes = torch.from_numpy(fixed.codes.astype(np.float64)).flatten(1)
    norm = (codes * codes).sum(1)
    fit = (w * codes).sum(1) / norm.clamp(min=1)
    codes = codes * torch.where(fit < 0, -1.0, 1.0).unsqueeze(1)
    method = torch.tensor(fixed.scale, dtype=torch.float32)
    on_levels = (codes.float() * method == w32).all(1)
    scale = torch.where(on_levels, method, fit.abs().float())
    recon = codes * scale.double().unsqueeze(1)
    error = (w - recon).abs().amax(1)
    tolerance = 2 * torch.finfo(torch.float32).eps * recon.abs().amax(1)
    bad = ~(error <= tolerance) | (scale == 0)
    if bad.any():
        c = int(torch.nonzero(bad)[0])
        raise ArtifactError(f"layer {name}: float weights are not codes * scale (channel {c}: "
                            f"max |w - code * scale| = {error[c].item():.3g}, tolerance {tolerance[c].item():.3g}, "
                            f"scale {scale[c].item():.6g}); the float model and its codes disagree")
    return codes.view(weight.shape).to(torch.int8), scale


def quantize_model(
    model: nn.Module, batches: list[torch.Tensor], weight_bits: int, activation_bits: int, percentile: float,
    fixed_codes: Mapping[str, LayerCodes] | None = None,
) -> nn.Module:
    """Folded copy of ``model`` with every conv/linear replaced by a QuantizedLayer.

    Layers named in ``fixed_codes`` keep the method's codes at their own width (see
    :func:`_fixed_channel_scales`); the others get ``weight_bits`` max-abs codes."""
    fixed_codes = fixed_codes or {}
    qmodel = fold_batchnorm(copy.deepcopy(model).cpu().eval())
    layers = _quantizable(qmodel)
    unknown = sorted(set(fixed_codes) - {n for n, _ in layers})
    if unknown:
        raise ArtifactError(f"codes given for layer(s) {unknown}, which are not conv/linear layers of the model")
    ranges = calibrate_input_ranges(qmodel, batches, percentile)
    a_qmax = 2 ** (activation_bits - 1) - 1
    for name, layer in layers:
        if name in fixed_codes:
            bits = fixed_codes[name].bits
            codes, scale = _fixed_channel_scales(name, layer.weight, fixed_codes[name])
        else:
            bits = weight_bits
            codes, scale = _max_abs_codes(layer.weight, weight_bits)
        q = QuantizedLayer(layer, bits, activation_bits)
        q.weight_q.copy_(codes)
        q.weight_scale.copy_(scale)
        q.input_scale.fill_(ranges[name] / a_qmax)
        if layer.bias is not None:
            q.bias.copy_(layer.bias.detach())
        _replace(qmodel, name, q)
    return qmodel


def quantized_layers(model: nn.Module) -> list[tuple[str, QuantizedLayer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantizedLayer)]


def save_int8(path: str | os.PathLike, qmodel: nn.Module, spec: ModelSpec) -> None:
    tensors, layers = {}, []
    for name, q in quantized_layers(qmodel):
        for buf in ("weight_q", "weight_scale", "input_scale", "bias"):
            tensors[f"{name}.{buf}"] = getattr(q, buf)
        layers.append({"name": name, **q.geometry(), "weight_bits": q.weight_bits,
                       "activation_bits": q.activation_bits})
    save_tensors(path, tensors, {"format": INT8_FORMAT, "layers": json.dumps(layers), **spec.to_metadata()})


def load_int8(path: str | os.PathLike) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the integer model from its file (no float weights needed)."""
    tensors, meta = load_tensors(path)
    if meta.get("format") != INT8_FORMAT:
        raise ArtifactError(f"{path}: not a cimflow int8 model (format={meta.get('format')!r})")
    spec = ModelSpec.from_metadata(meta, path)
    model = fold_batchnorm(spec.build().eval())
    try:
        layers = json.loads(meta["layers"])
        for info in layers:
            name = info["name"]
            q = QuantizedLayer(model.get_submodule(name), info["weight_bits"], info["activation_bits"])
            for buf in ("weight_q", "weight_scale", "input_scale", "bias"):
                getattr(q, buf).copy_(torch.from_numpy(np.array(tensors[f"{name}.{buf}"])))
            _replace(model, name, q)
    except (KeyError, AttributeError, RuntimeError, ValueError) as exc:
        raise ArtifactError(f"{path}: int8 layers do not match a {spec.model.class_name} ({exc!r})") from exc
    for name, q in quantized_layers(model):
        problem = _code_range_error(q.weight_q.numpy(), q.weight_bits)
        if problem is not None:
            raise ArtifactError(f"{path}: layer {name}: {problem}")
    return model.eval(), spec
