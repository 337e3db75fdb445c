"""Where the BFP maps act on training: one quantizer per layer operand, and the autograd glue.

* weights W: a parametrization (torch.nn.utils.parametrize, the prune mechanism) returns
  the quantized weight, straight-through in backward;
* input activations A: a forward pre-hook, straight-through in backward;
* output gradients G: a forward hook wraps the output in an identity whose backward
  quantizes dL/dY, so both the input-gradient GEMM (G x W) and the weight-gradient GEMM
  (G x A) consume the quantized G. Autograd saved the quantized W and A, so every
  operand of all three GEMMs is on its block grid.

On analytics steps each quantizer also measures its blocks' relative error at every
candidate width, and (W, A) the mean |dL/dx| per block from the straight-through
backward: no extra forward or backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from cimflow.compress.dynasty.blocks import BlockLayout, block_mean_abs, quantize_blocks, relative_errors
from cimflow.compress.dynasty.params import TensorKind


class TensorQuantizer:
    """One operand of one layer: its block layout, width map and pending analytics."""

    def __init__(
        self,
        layer: str,
        kind: TensorKind,
        block_size: int,
        initial_bits: int,
        candidate_bits: Sequence[int],
        rounding_noise: torch.Generator | None,
    ) -> None:
        self.layer, self.kind = layer, kind
        self.block_size = block_size
        self.initial_bits = initial_bits
        self.candidate_bits = tuple(candidate_bits)
        self.rounding_noise = rounding_noise
        self.layout: BlockLayout | None = None
        self.bits: Tensor | None = None
        self.errors: Tensor | None = None
        self.gradient_scale: Tensor | None = None

    def _ensure_layout(self, t: Tensor) -> BlockLayout:
        """The layout is fixed by the first tensor seen (per-sample shape for A and G)."""
        if self.layout is None:
            per_sample = self.kind != "weight"
            item_shape = tuple(t.shape[1:]) if per_sample else tuple(t.shape)
            self.layout = BlockLayout(item_shape, self.block_size, per_sample)
            self.bits = torch.full((self.layout.num_blocks,), float(self.initial_bits), device=t.device)
        return self.layout

    def quantize(self, t: Tensor, analyse: bool) -> Tensor:
        layout = self._ensure_layout(t)
        blocks = layout.to_blocks(t)
        if analyse:
            self.errors = relative_errors(blocks, self.candidate_bits)
        noise = None
        if self.rounding_noise is not None:
            noise = torch.rand(blocks.shape, generator=self.rounding_noise, device=blocks.device, dtype=blocks.dtype)
        return layout.from_blocks(quantize_blocks(blocks, self.bits.view(1, -1, 1), noise))

    def observe_gradient(self, grad: Tensor) -> None:
        layout = self._ensure_layout(grad)
        self.gradient_scale = block_mean_abs(layout.to_blocks(grad), layout.block_sizes())

    def set_bits(self, bits: np.ndarray) -> None:
        self.bits = torch.as_tensor(bits, dtype=torch.float32, device=self.bits.device)

    def sensitivity(self) -> np.ndarray:
        """s_b(m) = relative error at m x (block's mean |dL/dx| / the tensor's mean), [blocks, candidates].

        The weight is 1 for output gradients and for inputs that get no gradient (the
        image). Normalising per tensor keeps sensitivities of different layers and
        kinds on one scale (relative noise power), so one threshold serves them all.
        Consumes the pending analytics.
        """
        if self.errors is None:
            raise RuntimeError(f"no analytics recorded for {self.layer} {self.kind} on this refresh step")
        sensitivity = self.errors.double().cpu()
        if self.gradient_scale is not None:
            sizes = self.layout.block_sizes()
            scale = self.gradient_scale.cpu()
            mean = float((scale * sizes).sum() / sizes.sum())
            if mean > 0:
                sensitivity = sensitivity * (scale / mean)[:, None]
        self.errors, self.gradient_scale = None, None
        return sensitivity.numpy()


class StraightThrough(torch.autograd.Function):
    """Forward: BFP fake-quantization. Backward: identity (STE), observed on analytics steps."""

    @staticmethod
    def forward(ctx, x: Tensor, quantizer: TensorQuantizer, analyse: bool) -> Tensor:
        ctx.quantizer, ctx.analyse = quantizer, analyse
        return quantizer.quantize(x, analyse)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        if ctx.analyse:
            ctx.quantizer.observe_gradient(grad)
        return grad, None, None


class QuantizeGradient(torch.autograd.Function):
    """Forward: identity. Backward: quantizes the output gradient G before it reaches the GEMMs."""

    @staticmethod
    def forward(ctx, y: Tensor, quantizer: TensorQuantizer, analyse: bool) -> Tensor:
        ctx.quantizer, ctx.analyse = quantizer, analyse
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return ctx.quantizer.quantize(grad, ctx.analyse), None, None


class QuantizedWeight(nn.Module):
    """Parametrization: the layer sees its weight on the BFP grid of the current map."""

    def __init__(self, quantizer: TensorQuantizer, analytics_due: Callable[[bool], bool]) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.analytics_due = analytics_due

    def forward(self, weight: Tensor) -> Tensor:
        return StraightThrough.apply(weight, self.quantizer, self.analytics_due(self.training))
