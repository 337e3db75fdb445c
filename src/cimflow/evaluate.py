"""Model statistics, accuracy intervals and storage sizes reported by the evaluate stage.

Storage (:func:`storage`) counts what a chip or a file must hold to run the integer
model, per quantized layer, in bytes (each separately packed stream rounded up to a
whole byte):

* side data, in every encoding: the float32 weight scales (one per output channel, or
  a single one when all of a layer's channel scales are equal, as for an ADMM layer
  without BatchNorm), the float32 input scale and the float32 bias (one per channel,
  stored even when zero, as the int8 file does);
* ``int8_bytes``: every code at 8 bits, the reference a plain int8 export ships;
* ``dense_bytes``: every code at the layer's real width ``weight_bits`` (8 for the plain
  export, b for ADMM b-bit codes, 1 for binary);
* ``bitmask_bytes``: the nonzero codes at that width plus a 1-bit-per-weight occupancy mask;
* ``relative_bytes``: Deep Compression's relative index (Han et al., ICLR 2016) over
  the layer's codes in flat (row-major) order: each nonzero stores its code and, in k
  index bits, its gap to the previous nonzero (the first counts from index 0); a gap
  above 2^k - 1 first inserts filler entries, each a zero code plus an index that
  advances 2^k - 1. Codes and indices are two packed streams; k is the best in
  ``RELATIVE_INDEX_BITS`` (ties to the smaller k);
* ``sparse_bytes``: the smallest of dense, bitmask and relative (ties in that order),
  so a layer is never charged more for being "sparse" than for being dense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch
from torch import nn

from cimflow.quantize import QuantizedLayer, quantized_layers

RELATIVE_INDEX_BITS = range(1, 9)
"""Index widths k tried for the relative-index encoding (Deep Compression used 5 and 8)."""


def wilson_interval(correct: int, total: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (sound at accuracies near 1)."""
    if total == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Total and non-zero trainable parameters."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return total, nonzero


def count_weights(model: nn.Module) -> tuple[int, int]:
    """Total and non-zero conv/linear weights (biases excluded), as pruning ratios count."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(m.weight.numel() for m in layers), sum(int(torch.count_nonzero(m.weight)) for m in layers)


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one inference in conv and linear layers."""
    macs = 0

    def hook(mod: nn.Module, _args: tuple, out: torch.Tensor) -> None:
        nonlocal macs
        fan_in = mod.weight[0].numel()
        macs += out[0].numel() * fan_in

    targets = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in targets]
    was_training = model.training
    model.eval()
    model(torch.zeros((1, *input_shape)))
    model.train(was_training)
    for h in handles:
        h.remove()
    return macs


def _packed(bits: int) -> int:
    return math.ceil(bits / 8)


def side_bytes(q: QuantizedLayer) -> int:
    """Float32 weight scales (one if all channels share it), input scale and bias."""
    scales = q.weight_scale
    weight_scales = 1 if bool(torch.all(scales == scales[0])) else scales.numel()
    return 4 * (weight_scales + q.input_scale.numel() + q.bias.numel())


def relative_index_entries(codes: np.ndarray, index_bits: int) -> int:
    """Entries (nonzeros plus fillers) of the relative-index encoding of flat ``codes``."""
    positions = np.flatnonzero(codes)
    gaps = np.diff(positions, prepend=0)
    fillers = np.maximum((gaps - 1) // (2**index_bits - 1), 0)
    return int(positions.size + fillers.sum())


def relative_index_bytes(codes: np.ndarray, code_bits: int) -> tuple[int, int]:
    """Smallest relative-index payload (code and index streams) and the k that gives it."""
    sizes = []
    for k in RELATIVE_INDEX_BITS:
        entries = relative_index_entries(codes, k)
        sizes.append((_packed(entries * code_bits) + _packed(entries * k), k))
    return min(sizes)


def layer_storage(name: str, q: QuantizedLayer) -> dict[str, object]:
    """One row of :func:`storage`: every encoding's bytes and the one the layer uses."""
    codes = q.weight_q.numpy().ravel()
    count, nonzero, bits = codes.size, int(np.count_nonzero(codes)), q.weight_bits
    side = side_bytes(q)
    relative, k = relative_index_bytes(codes, bits)
    sizes = {"dense": _packed(count * bits), "bitmask": _packed(nonzero * bits) + _packed(count), "relative": relative}
    encoding = min(sizes, key=sizes.get)
    return {"layer": name, "weights": count, "nonzero": nonzero, "weight_bits": bits, "side_bytes": side,
            "int8_bytes": count + side, "dense_bytes": sizes["dense"] + side,
            "bitmask_bytes": sizes["bitmask"] + side, "relative_bytes": relative + side, "relative_k": k,
            "sparse_bytes": sizes[encoding] + side, "encoding": encoding}


@dataclass(frozen=True)
class StorageReport:
    """Per-layer storage (one row per quantized layer; columns as in the module docstring)."""

    layers: pd.DataFrame

    def total(self, column: str) -> int:
        return int(self.layers[column].sum())

    @property
    def int8_bytes(self) -> int:
        return self.total("int8_bytes")

    @property
    def dense_bytes(self) -> int:
        return self.total("dense_bytes")

    @property
    def sparse_bytes(self) -> int:
        return self.total("sparse_bytes")

    def describe(self) -> str:
        """The encoding each layer is stored in, e.g. ``conv1: dense 3b, fc1: relative 3b k=4``."""
        return ", ".join(
            f"{r.layer}: {r.encoding} {r.weight_bits}b" + (f" k={r.relative_k}" if r.encoding == "relative" else "")
            for r in self.layers.itertuples(index=False))


def storage(qmodel: nn.Module) -> StorageReport:
    """Storage of the integer model, per layer and in total, at the layers' real widths."""
    rows = [layer_storage(name, q) for name, q in quantized_layers(qmodel)]
    return StorageReport(pd.DataFrame(rows))
