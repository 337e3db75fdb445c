"""Model statistics and accuracy intervals reported by the evaluate stage."""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torch import nn

from cimflow.quantize import quantized_layers


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


def int8_model_bytes(qmodel: nn.Module, sparse: bool = False) -> int:
    """Storage of the integer model: packed weight codes plus float32 scales and biases.

    ``sparse``: store only non-zero codes plus a one-bit-per-weight occupancy mask, the
    format a pruned model would ship in."""
    total = 0
    for _, q in quantized_layers(qmodel):
        if sparse:
            nonzero = int(torch.count_nonzero(q.weight_q))
            total += math.ceil(nonzero * q.weight_bits / 8) + math.ceil(q.weight_q.numel() / 8)
        else:
            total += math.ceil(q.weight_q.numel() * q.weight_bits / 8)
        total += 4 * (q.weight_scale.numel() + q.input_scale.numel() + q.bias.numel())
    return total
