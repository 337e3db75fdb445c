"""A super-resolution network on whole images: Y in, Y out, in 8-bit pixel units."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cimflow.sr.metrics import rgb_to_y


def y_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(1, 1, H, W) float32 network input: the image's Y channel / 255."""
    return torch.from_numpy(np.asarray(rgb_to_y(rgb), dtype=np.float32) / 255.0)[None, None]


def to_pixels(output: torch.Tensor) -> np.ndarray:
    """A network's (1, 1, H, W) Y output as an 8-bit image would store it (rounded, clipped), float64."""
    return np.clip(np.floor(output[0, 0].double().cpu().numpy() * 255.0 + 0.5), 0.0, 255.0)


@torch.no_grad()
def super_resolve(model: nn.Module, lr_rgb: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """The model's Y output for one whole low-resolution image, in 8-bit pixel values."""
    model.eval()
    return to_pixels(model(y_tensor(lr_rgb).to(device)))
