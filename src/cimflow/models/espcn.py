"""ESPCN (Shi et al., CVPR 2016): convolutions at low resolution, then a sub-pixel
(pixel-shuffle) upscale; the CPU-sized super-resolution backbone.

ReLU replaces the paper's tanh, as most re-implementations do: the CD-CiM macro fuses
ReLU into its conversion, and Feature Regularization sparsifies the ReLU outputs. The
activations are ``nn.ReLU`` modules because sparsifiers attach to them."""

from __future__ import annotations

import torch
from torch import nn


class ESPCN(nn.Module):
    def __init__(self, scale: int, in_channels: int = 1, features: tuple[int, int] = (64, 32)) -> None:
        super().__init__()
        first, second = features
        self.conv1 = nn.Conv2d(in_channels, first, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(first, second, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(second, in_channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x))))))
