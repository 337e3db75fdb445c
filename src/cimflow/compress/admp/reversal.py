"""Gradient reversal (Ganin & Lempitsky, ICML 2015): identity forward, -lambda x gradient back.

The feature extractor then learns to fool the domain classifier that sits behind it, which
is what makes DANN's features domain-invariant.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.neg() * ctx.strength, None


def reverse_gradient(x: Tensor, strength: float) -> Tensor:
    """``x`` unchanged; its gradient multiplied by ``-strength`` on the way back."""
    return _Reverse.apply(x, strength)


class GradientReversal(nn.Module):
    """:func:`reverse_gradient` as a layer whose ``strength`` the training schedule sets."""

    def __init__(self, strength: float = 1.0) -> None:
        super().__init__()
        self.strength = strength

    def forward(self, x: Tensor) -> Tensor:
        return reverse_gradient(x, self.strength)


def dann_strength(progress: float, gamma: float = 10.0) -> float:
    """DANN's ramp 2 / (1 + exp(-gamma p)) - 1 from 0 at the start (p = 0) towards 1 at the end
    (p = 1): the domain loss cannot disturb the features before they carry class information."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"training progress must be in [0, 1], got {progress}")
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0
