"""EDSR-baseline (Lim et al., CVPRW 2017): residual blocks without batch norm at 64
channels, a global skip, and a pixel-shuffle upsampler; the backbone for the real run."""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    def __init__(self, features: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.relu = nn.ReLU()  # its output is what Feature Regularization sparsifies
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(self.relu(self.conv1(x)))


class EDSRBaseline(nn.Module):
    """``blocks`` residual blocks of ``features`` channels; x4 upsamples in two x2 steps."""

    def __init__(self, scale: int, in_channels: int = 1, blocks: int = 16, features: int = 64,
                 res_scale: float = 1.0) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"EDSRBaseline supports scale 2, 3 or 4, got {scale}")
        self.head = nn.Conv2d(in_channels, features, 3, padding=1)
        self.body = nn.Sequential(*(ResBlock(features, res_scale) for _ in range(blocks)))
        self.body_tail = nn.Conv2d(features, features, 3, padding=1)
        steps = [2, 2] if scale == 4 else [scale]
        up: list[nn.Module] = []
        for step in steps:
            up += [nn.Conv2d(features, features * step * step, 3, padding=1), nn.PixelShuffle(step)]
        self.upsample = nn.Sequential(*up)
        self.tail = nn.Conv2d(features, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        return self.tail(self.upsample(head + self.body_tail(self.body(head))))
