"""MACs from actual non-zeros: what a sparse engine that skips zero input entries executes.

For a convolution with C_out outputs and a k x k kernel, an output pixel costs C_out
multiply-accumulates per non-zero input entry in its receptive field (all channels of
the k x k window); zero entries, including the zero padding, cost nothing. The dense
count is the usual H_out W_out C_out C_in k^2. Counted per layer and per forward pass
(one image) by forward pre-hooks on every Conv2d.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LayerCount:
    layer: str
    dense_macs: int
    sparse_macs: int
    input_sparsity: float  # fraction of the layer's input entries that are exactly zero


@dataclass
class MacCounter:
    """Context manager: ``counts`` holds one LayerCount per Conv2d call while active."""

    model: nn.Module
    counts: list[LayerCount] = field(default_factory=list)

    def __enter__(self) -> MacCounter:
        self._handles = [module.register_forward_pre_hook(self._hook(name))
                         for name, module in self.model.named_modules() if isinstance(module, nn.Conv2d)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook(self, name: str):
        def count(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...]) -> None:
            self.counts.append(conv_macs(name, module, inputs[0]))

        return count

    def take(self) -> list[LayerCount]:
        """The counts so far, clearing them (call once per image)."""
        counts, self.counts = self.counts, []
        return counts


@torch.no_grad()
def conv_macs(name: str, conv: nn.Conv2d, x: torch.Tensor) -> LayerCount:
    if conv.groups != 1 or isinstance(conv.padding, str):
        raise ValueError(f"{name}: MAC counting supports ungrouped convolutions with numeric padding")
    nonzero = (x != 0).to(torch.float64)
    window = torch.ones(1, 1, *conv.kernel_size, dtype=torch.float64, device=x.device)
    per_pixel = F.conv2d(nonzero.sum(1, keepdim=True), window, stride=conv.stride, padding=conv.padding,
                         dilation=conv.dilation)
    out_pixels = per_pixel.shape[-2] * per_pixel.shape[-1] * x.shape[0]
    dense = out_pixels * conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    return LayerCount(name, int(dense), int(round(per_pixel.sum().item())) * conv.out_channels,
                      float(1.0 - nonzero.mean().item()))
