"""The per-call settings of the conversion stage, flattened per output column.

Both backends (the Cython kernel and the numpy reference) consume one
:class:`ConversionSetup`, so they cannot disagree on how a chip, a calibration and a
full scale turn into numbers. All analog-stage values are float32 because both
backends compute that stage in float32 in the same operation order.

The transfer of one conversion, in order (v: analog sum in integer-product units):

    u    = v * (1 - parasitic_attenuation) / full_scale     summing-node gain loss
    u    = u / (1 + a |u|)                                   charge-sharing compression
    x    = u * levels * (1 + gain_err) + offset [+ noise]    ADC input in LSB
    sign = x + (sign_offset - trim) >= 0                     first SAR decision
    mag  = x if sign else -x;  code = round(mag + INL(mag / levels)), clipped to 0..levels-1

A signed conversion returns sign * code; a fused-ReLU one returns 0 for a negative sign.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimflow.cim.chip import ChipInstance
from cimflow.cim.noise import stream_key


@dataclass(frozen=True)
class ConversionSetup:
    pre_scale: np.float32
    """(1 - parasitic_attenuation) / full_scale: analog sum to normalised node voltage."""
    compression: np.float32
    """a of u / (1 + a|u|), set so full scale loses charge_sharing_nonlinearity LSB."""
    inv_levels: np.float32
    max_code: int
    lsb: float
    """One ADC code in integer-product units: full_scale / 2**(adc_bits-1)."""
    post_gain: np.ndarray
    offset: np.ndarray
    sign_threshold: np.ndarray
    inl_c0: np.ndarray
    inl_c1: np.ndarray
    adc_of_column: np.ndarray
    correction: np.ndarray | None
    """(adcs, 2*max_code+1) corrected value in LSB per signed code, or None (code as is)."""
    noise_sigma: np.float32
    """Noise in LSB rms; 0 turns the draws off."""
    noise_key: int


def conversion_setup(
    chip: ChipInstance,
    columns: int,
    full_scale: float,
    noise_seed: int | None,
    correction: np.ndarray | None,
    trim_lsb: np.ndarray | None,
) -> ConversionSetup:
    """Settings for converting ``columns`` layer columns of ``chip`` at ``full_scale``."""
    if not np.isfinite(full_scale) or full_scale <= 0:
        raise ValueError(f"full_scale must be a positive number; got {full_scale}")
    cfg = chip.config
    levels = cfg.magnitude_levels
    adc = (np.arange(columns) % cfg.adcs).astype(np.int32)
    lost = cfg.charge_sharing_nonlinearity / levels
    trim = np.zeros(cfg.adcs) if trim_lsb is None else trim_lsb

    def per_column(per_adc: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(per_adc[adc], dtype=np.float32)

    use_noise = noise_seed is not None and cfg.noise_lsb_rms > 0
    return ConversionSetup(
        pre_scale=np.float32((1.0 - cfg.parasitic_attenuation) / full_scale),
        compression=np.float32(lost / (1.0 - lost)),
        inv_levels=np.float32(1.0 / levels),
        max_code=cfg.max_magnitude_code,
        lsb=full_scale / levels,
        post_gain=per_column(levels * (1.0 + chip.adc_gain_error)),
        offset=per_column(chip.adc_offset_lsb),
        sign_threshold=per_column(chip.sign_offset_lsb - trim),
        inl_c0=per_column(chip.inl_coefficients[:, 0]),
        inl_c1=per_column(chip.inl_coefficients[:, 1]),
        adc_of_column=adc,
        correction=None if correction is None else np.ascontiguousarray(correction, dtype=np.float32),
        noise_sigma=np.float32(cfg.noise_lsb_rms if use_noise else 0.0),
        noise_key=stream_key(noise_seed) if use_noise else 0,
    )
