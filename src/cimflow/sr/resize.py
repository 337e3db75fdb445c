"""MATLAB's ``imresize`` (bicubic, antialiased), the resampler every SR table was made with.

Published SR numbers (SRCNN onwards) make low-resolution inputs and the bicubic baseline
with MATLAB's ``imresize``; PIL, OpenCV and scikit-image use other kernels, centres or
antialiasing and move PSNR by tenths of a dB. This follows MATLAB's algorithm: the Keys
cubic with a = -0.5, the kernel stretched by 1/scale when shrinking, output pixel x
centred at x/scale + (1 - 1/scale)/2 in 1-based input coordinates, symmetric mirroring at
the borders, and the dimension with the smaller scale resized first.
"""

from __future__ import annotations

import math

import numpy as np

_KERNEL_WIDTH = 4.0


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0)))


def _contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights, indices), each (out_length, taps): which input pixels make each output pixel."""
    width = _KERNEL_WIDTH / scale if scale < 1.0 else _KERNEL_WIDTH
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(scale * distance) if scale < 1.0 else _cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, mirror.size)]
    used = np.any(weights != 0.0, axis=0)
    return weights[:, used], indices[:, used]


def _resize_axis(image: np.ndarray, axis: int, out_length: int, scale: float) -> np.ndarray:
    weights, indices = _contributions(image.shape[axis], out_length, scale)
    moved = np.moveaxis(image, axis, 0)
    gathered = moved[indices]  # (out, taps, ...)
    out = np.einsum("ot,ot...->o...", weights, gathered)
    return np.moveaxis(out, 0, axis)


def imresize(image: np.ndarray, scale: float | None = None,
             output_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image as MATLAB's ``imresize(image, scale, 'bicubic')``.

    Give ``scale`` (output size ceil(size * scale)) or ``output_shape`` (rows, cols; the
    scale per axis is then out/in). uint8 in gives uint8 out, rounded half up and clipped
    as MATLAB stores it; any other dtype is computed and returned as float64.
    """
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ValueError(f"imresize needs an (H, W) or (H, W, C) image, got shape {array.shape}")
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize needs exactly one of scale and output_shape")
    rows, cols = array.shape[:2]
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"imresize scale must be positive, got {scale}")
        scales = (float(scale), float(scale))
        shape = (int(math.ceil(rows * scale)), int(math.ceil(cols * scale)))
    else:
        shape = (int(output_shape[0]), int(output_shape[1]))
        if min(shape) < 1:
            raise ValueError(f"imresize output_shape must be positive, got {output_shape}")
        scales = (shape[0] / rows, shape[1] / cols)
    out = array.astype(np.float64)
    for axis in sorted((0, 1), key=lambda a: scales[a]):  # stable: rows first on a tie, as MATLAB
        out = _resize_axis(out, axis, shape[axis], scales[axis])
    if array.dtype == np.uint8:
        return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    return out
