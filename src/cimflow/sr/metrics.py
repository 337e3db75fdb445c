"""The SR evaluation protocol: modcrop, Y of BT.601 YCbCr, border shave, PSNR and SSIM on Y.

This is the convention of the published tables (SRCNN's and EDSR's MATLAB scripts):
ground truth cropped to a multiple of the scale, both images converted to the Y channel
as MATLAB's ``rgb2ycbcr`` does for 8-bit images (rounded to integers), ``scale`` pixels
shaved off every border, then PSNR with peak 255 and the SSIM of Wang et al. (2004):
11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, only windows inside the image.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

_PEAK = 255.0


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """The image cropped at the bottom and right to a multiple of ``scale``."""
    rows, cols = image.shape[:2]
    return image[: rows - rows % scale, : cols - cols % scale]


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Y of BT.601 studio-swing YCbCr (16..235) as float64; a 2-D input already is Y.

    uint8 RGB gives the integer Y that MATLAB's ``rgb2ycbcr`` stores; float RGB in 8-bit
    units gives unrounded Y.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        return array.astype(np.float64)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"rgb_to_y needs an (H, W, 3) RGB or (H, W) Y image, got shape {array.shape}")
    rgb = array.astype(np.float64) / _PEAK
    y = 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    return np.floor(y + 0.5) if array.dtype == np.uint8 else y


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """The image without ``border`` pixels on every side."""
    if border <= 0:
        return image
    return image[border:-border, border:-border]


def _pair(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = rgb_to_y(sr), rgb_to_y(hr)
    if a.shape != b.shape:
        raise ValueError(f"SR output {a.shape} and ground truth {b.shape} differ in size")
    if min(a.shape) <= 2 * scale:
        raise ValueError(f"image {a.shape} too small to shave {scale} pixels from each border")
    return shave(a, scale), shave(b, scale)


def psnr_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """PSNR (dB) on Y after shaving ``scale`` border pixels; inf for identical images."""
    a, b = _pair(sr, hr, scale)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(_PEAK * _PEAK / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only windows that lie wholly inside the image."""
    half = window.size // 2
    out = correlate1d(correlate1d(image, window, axis=0, mode="constant"), window, axis=1, mode="constant")
    return out[half:-half, half:-half]


def ssim_y(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    """Mean SSIM on Y after shaving ``scale`` border pixels (Wang et al. 2004 settings)."""
    a, b = _pair(sr, hr, scale)
    window = _gaussian_window()
    if min(a.shape) < window.size:
        raise ValueError(f"image {a.shape} after shaving is smaller than the 11x11 SSIM window")
    c1, c2 = (0.01 * _PEAK) ** 2, (0.03 * _PEAK) ** 2
    mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a * mu_a
    var_b = _filter_valid(b * b, window) - mu_b * mu_b
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
