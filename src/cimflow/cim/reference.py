"""Plain numpy reference of the per-conversion model: the definition the Cython kernel must match.

It mirrors ``_kernel_core.pxi`` operation for operation in float32 (same order, no fused
multiply-add), so on the same analog sums and the same noise draws the two backends
agree to the last bit. The conversion steps are listed in :mod:`cimflow.cim.conversion`.
"""

from __future__ import annotations

import numpy as np

from cimflow.cim.conversion import ConversionSetup
from cimflow.cim.mapping import BIT_COUNT
from cimflow.cim.noise import normal_draws


def input_ones(x_codes: np.ndarray) -> np.ndarray:
    """(K,) ones in the int8 input bytes of each input row k, summed over the batch."""
    return BIT_COUNT[x_codes.view(np.uint8)].sum(axis=0)


def adc_input_lsb(analog: np.ndarray, setup: ConversionSetup) -> np.ndarray:
    """Noise-free ADC input in LSB for (S, B, M) analog sums: attenuation, compression, gain,
    offset, bias DAC."""
    u = analog * setup.pre_scale[:, None, None]
    u = u / (np.float32(1) + setup.compression * np.abs(u))
    return (u * setup.post_gain + setup.offset) + setup.bias


def quantize_magnitude(magnitude: np.ndarray, setup: ConversionSetup) -> np.ndarray:
    """Magnitude SAR with the ADC's static INL: int32 codes 0..max_code."""
    if setup.inl_table is None:
        y = np.minimum(np.maximum(magnitude * setup.inv_levels, np.float32(0)), np.float32(1))
        inl = y * (np.float32(1) - y) * (setup.inl_c0 + setup.inl_c1 * y)
    else:
        levels = setup.max_code + 1
        t = np.minimum(np.maximum(magnitude, np.float32(0)), np.float32(levels))
        index = np.minimum(t.astype(np.int32), levels - 1)
        fraction = t - index.astype(np.float32)
        low = setup.inl_table[setup.adc_of_column, index]
        high = setup.inl_table[setup.adc_of_column, index + 1]
        inl = low + fraction * (high - low)
    rounded = magnitude + inl + np.float32(0.5)
    return np.minimum(np.maximum(rounded, np.float32(0)), np.float32(setup.max_code)).astype(np.int32)


def adc_decisions(
    analog: np.ndarray, setup: ConversionSetup, first_vector: int = 0, total_vectors: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sign decision (True = positive) and magnitude code of every (S, B, M) conversion.

    The block holds vectors first_vector.. of a call of ``total_vectors`` (default: B);
    conversion (s, b, m) of the call uses noise draw (s * total_vectors + b) * M + m.
    """
    segments, batch, columns = analog.shape
    x = adc_input_lsb(analog, setup)
    if setup.noise_sigma > 0:
        total = batch if total_vectors is None else total_vectors
        s, b, m = np.ogrid[:segments, :batch, :columns]
        index = (s * total + first_vector + b) * columns + m
        x = x + setup.noise_sigma * normal_draws(setup.noise_key, index)
    positive = (x + setup.sign_threshold) >= np.float32(0)
    return positive, quantize_magnitude(np.where(positive, x, -x), setup)


def hold(analog: np.ndarray, keep: np.float32) -> np.ndarray:
    """Analog accumulation of (S, B, M) partial sums: (1, B, M), segment s held S-1-s steps."""
    held = analog[0]
    for s in range(1, analog.shape[0]):
        held = held * keep + analog[s]
    return held[None]


def convert(
    analog: np.ndarray,
    active: np.ndarray,
    setup: ConversionSetup,
    fused: bool,
    digital_relu: bool,
) -> tuple[np.ndarray, int]:
    """Convert (steps, B, M) values (partial sums, or held sums) and accumulate the steps.

    ``active`` is (steps, M). Returns the (B, M) float64 output in integer-product units
    and the number of sign-only (ReLU early-stop) conversions.
    """
    segments, batch, columns = analog.shape
    positive, code = adc_decisions(analog, setup)
    live = np.broadcast_to(active.astype(bool)[:, None, :], analog.shape)
    if fused:
        values = _corrected(code, setup).astype(np.float32)
        values = np.where(positive, values if setup.correction is None else np.maximum(values, 0), 0)
        sign_only = int(np.count_nonzero(live & ~positive))
    else:
        values = _corrected(np.where(positive, code, -code), setup).astype(np.float32)
        sign_only = 0
    values = np.where(live, values, np.float32(0))
    out = np.zeros((batch, columns), dtype=np.float64)
    for s in range(segments):
        out += values[s].astype(np.float64) * setup.lsb[s]
    if digital_relu:
        out = np.maximum(out, 0.0)
    return out, sign_only


def _corrected(signed_code: np.ndarray, setup: ConversionSetup) -> np.ndarray:
    if setup.correction is None:
        return signed_code
    return setup.correction[setup.adc_of_column, signed_code + setup.max_code]
