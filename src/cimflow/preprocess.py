"""Turn stored uint8 images into network inputs, identically in every stage.

The prepared data stay at their native resolution; resizing (8x8 digits -> 28x28 for
LeNet-5) and per-channel normalisation happen here so that train, int8 calibration and
evaluation cannot disagree. The statistics travel with the model artifact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Preprocessor:
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, images: np.ndarray, input_size: int) -> Preprocessor:
        """Per-channel mean/std of the training images (in [0, 1] units)."""
        x = images.astype(np.float64) / 255.0
        mean = x.mean(axis=(0, 2, 3))
        std = np.maximum(x.std(axis=(0, 2, 3)), 1e-6)
        return cls(input_size, tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def __call__(self, images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        x = torch.as_tensor(images).to(device=device, dtype=torch.float32) / 255.0
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


def augment(x: torch.Tensor, generator: torch.Generator, crop_padding: int, hflip: bool) -> torch.Tensor:
    """Random shifts (pad + crop) and optional horizontal flips, drawn from ``generator``."""
    n, _, h, w = x.shape
    if crop_padding > 0:
        padded = F.pad(x, (crop_padding,) * 4)
        offsets = torch.randint(0, 2 * crop_padding + 1, (n, 2), generator=generator).tolist()
        x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
    return x
