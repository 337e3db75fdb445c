"""Post-training integer export in the form the CD-CiM hardware stage consumes.

Each Conv2d/Linear becomes a :class:`QuantizedLayer` holding signed integer weight
codes (per-output-channel symmetric scales), a per-tensor symmetric input scale
calibrated on training images, and a float bias. BatchNorm is folded into the
preceding convolution first, as an accelerator would. The integer products are
computed by a pluggable *engine*: exact digital arithmetic by default, the CiM
simulator when mapped onto the macro.

File layout (safetensors): ``<layer>.weight_q`` int8, ``<layer>.weight_scale`` f32
[out], ``<layer>.input_scale`` f32 [1], ``<layer>.bias`` f32 [out]; metadata holds the
float model's spec and a JSON list of layers with their geometry.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimflow.artifacts import ArtifactError, load_tensors, save_tensors
from cimflow.modelio import ModelSpec

INT8_FORMAT = "cimflow-int8-v1"

Engine = Callable[["QuantizedLayer", torch.Tensor], torch.Tensor]
"""Maps a layer and its integer input codes (float64) to its float64 output."""


def exact_engine(layer: QuantizedLayer, x_codes: torch.Tensor) -> torch.Tensor:
    """Integer accumulation, exact: float64 holds every int8 x int8 sum of these lengths."""
    w = layer.weight_q.to(torch.float64)
    if layer.kind == "conv":
        return F.conv2d(x_codes, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x_codes, w)


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
        q = torch.round(x.to(torch.float64) / self.input_scale.double())
        return q.clamp_(-self.act_qmax, self.act_qmax)

    def _per_channel(self, values: torch.Tensor) -> torch.Tensor:
        return values.double().view((1, -1, 1, 1) if self.kind == "conv" else (1, -1))

    def output_scale(self) -> torch.Tensor:
        """Float value of one integer-product unit, per output channel (broadcastable)."""
        return self._per_channel(self.input_scale * self.weight_scale)

    def dequantize(self, acc: torch.Tensor) -> torch.Tensor:
        return acc * self.output_scale() + self._per_channel(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.engine(self, self.quantize_input(x)).to(x.dtype)

    def geometry(self) -> dict:
        info = {"kind": self.kind, "shape": list(self.weight_q.shape)}
        if self.kind == "conv":
            info |= {"stride": list(self.stride), "padding": list(self.padding),
                     "dilation": list(self.dilation), "groups": self.groups}
        return info


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``bnK`` into its sibling ``convK`` (the naming our models use), in place."""
    for parent in model.modules():
        for name, bn in list(parent.named_children()):
            if not (isinstance(bn, nn.BatchNorm2d) and name.startswith("bn")):
                continue
            conv = getattr(parent, "conv" + name[2:], None)
            if not isinstance(conv, nn.Conv2d):
                raise ValueError(f"cannot fold {name}: no sibling conv{name[2:]}")
            with torch.no_grad():
                gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                   conv.padding, conv.dilation, conv.groups, bias=True)
                folded.weight.copy_(conv.weight * gain.view(-1, 1, 1, 1))
                folded.bias.copy_((bias - bn.running_mean) * gain + bn.bias)
            setattr(parent, "conv" + name[2:], folded)
            setattr(parent, name, nn.Identity())
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


def quantize_model(
    model: nn.Module, batches: list[torch.Tensor], weight_bits: int, activation_bits: int, percentile: float
) -> nn.Module:
    """Folded copy of ``model`` with every conv/linear replaced by a QuantizedLayer."""
    qmodel = fold_batchnorm(copy.deepcopy(model).cpu().eval())
    ranges = calibrate_input_ranges(qmodel, batches, percentile)
    w_qmax = 2 ** (weight_bits - 1) - 1
    a_qmax = 2 ** (activation_bits - 1) - 1
    for name, layer in _quantizable(qmodel):
        q = QuantizedLayer(layer, weight_bits, activation_bits)
        w = layer.weight.detach().double()
        max_abs = w.abs().flatten(1).amax(1)
        scale = torch.where(max_abs > 0, max_abs / w_qmax, torch.ones_like(max_abs))
        shape = (-1,) + (1,) * (w.ndim - 1)
        q.weight_q.copy_(torch.round(w / scale.view(shape)).clamp(-w_qmax, w_qmax).to(torch.int8))
        q.weight_scale.copy_(scale.float())
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
        raise ArtifactError(f"{path}: int8 layers do not match a {spec.model} ({exc!r})") from exc
    return model.eval(), spec
