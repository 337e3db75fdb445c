"""The per-call settings of the conversion stage, flattened per output column.

Both backends (the Cython kernel and the numpy reference) consume one
:class:`ConversionSetup`, so they cannot disagree on how a chip, a calibration and a
full scale turn into numbers. All analog-stage values are float32 because both
backends compute that stage in float32 in the same operation order.

The transfer of one conversion, in order (v: analog sum in integer-product units; with
analog accumulation v = sum_s keep**(S-1-s) p_s over the held segments' partial sums):

    u    = v * (1 - parasitic_attenuation) / full_scale     summing-node gain loss
    u    = u / (1 + a |u|)                                   charge-sharing compression
    x    = u * levels * (1 + gain_err) + offset + bias       ADC input in LSB (bias DAC)
    x    = x [+ noise]                                       comparator, kT/C, hold steps
    sign = x + (sign_offset - trim) >= 0                     first SAR decision
    mag  = x if sign else -x;  code = round(mag + INL(mag)), clipped to 0..levels-1
           INL: the modeled y(1-y)(c0 + c1 y), y = mag / levels, or a measured table
           linear between magnitude codes

A signed conversion returns sign * code; a fused-ReLU one returns 0 for a negative sign.
The bias DAC sits at the comparator and SAR reference, after the charge-sharing curve:
its code is the requested bias over the DAC step and the calibrated DAC gain, rounded
and clipped to the DAC's range; the DAC's own gain error and the ADC's reference gain
scale what it adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimflow.cim.chip import ChipInstance
from cimflow.cim.noise import stream_key


@dataclass(frozen=True)
class ConversionSetup:
    pre_scale: np.ndarray
    """(steps,) float32 (1 - parasitic_attenuation) / full_scale of each conversion step."""
    compression: np.float32
    """a of u / (1 + a|u|), set so full scale loses charge_sharing_nonlinearity LSB."""
    inv_levels: np.float32
    max_code: int
    lsb: np.ndarray
    """(steps,) float64: one ADC code in integer-product units, full_scale / 2**(adc_bits-1)."""
    post_gain: np.ndarray
    offset: np.ndarray
    bias: np.ndarray
    """(M,) float32 bias-DAC value added to the ADC input, in LSB (zeros: no bias)."""
    sign_threshold: np.ndarray
    inl_c0: np.ndarray
    inl_c1: np.ndarray
    adc_of_column: np.ndarray
    inl_table: np.ndarray | None
    """(adcs, levels + 1) float32 measured INL in LSB per magnitude code, or None (modeled)."""
    correction: np.ndarray | None
    """(adcs, 2*max_code+1) corrected value in LSB per signed code, or None (code as is)."""
    noise_sigma: np.float32
    """Noise in LSB rms (comparator and kT/C, plus each hold step's); 0 turns the draws off."""
    noise_key: int
    hold_keep: np.float32
    """1 - hold_charge_loss: what one hold step keeps of the held charge."""


def conversion_setup(
    chip: ChipInstance,
    columns: int,
    full_scales: np.ndarray | float,
    noise_seed: int | None,
    correction: np.ndarray | None,
    trim_lsb: np.ndarray | None,
    bias_lsb: np.ndarray | None = None,
    hold_steps: int = 0,
) -> ConversionSetup:
    """Settings for converting ``columns`` layer columns of ``chip``.

    ``full_scales``: one ADC range per conversion step (segment, or one with analog
    accumulation). ``bias_lsb``: per-column bias-DAC value from :func:`bias_injection`.
    ``hold_steps``: hold steps before the conversion (analog accumulation: segments - 1).
    """
    scales = np.atleast_1d(np.asarray(full_scales, dtype=np.float64))
    if scales.ndim != 1 or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise ValueError(f"full_scale must be positive numbers; got {full_scales}")
    cfg = chip.config
    levels = cfg.magnitude_levels
    adc = (np.arange(columns) % cfg.adcs).astype(np.int32)
    lost = cfg.charge_sharing_nonlinearity / levels
    trim = np.zeros(cfg.adcs) if trim_lsb is None else trim_lsb

    def per_column(per_adc: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(per_adc[adc], dtype=np.float32)

    sigma = float(np.sqrt(cfg.noise_lsb_rms**2 + hold_steps * cfg.hold_noise_lsb_rms**2))
    use_noise = noise_seed is not None and sigma > 0
    if bias_lsb is None:
        bias_lsb = np.zeros(columns, dtype=np.float32)
    if bias_lsb.shape != (columns,):
        raise ValueError(f"bias must hold one value per column ({columns}); got shape {bias_lsb.shape}")
    return ConversionSetup(
        pre_scale=((1.0 - cfg.parasitic_attenuation) / scales).astype(np.float32),
        compression=np.float32(lost / (1.0 - lost)),
        inv_levels=np.float32(1.0 / levels),
        max_code=cfg.max_magnitude_code,
        lsb=scales / levels,
        post_gain=per_column(levels * (1.0 + chip.adc_gain_error)),
        offset=per_column(chip.adc_offset_lsb),
        bias=np.ascontiguousarray(bias_lsb, dtype=np.float32),
        sign_threshold=per_column(chip.sign_offset_lsb - trim),
        inl_c0=per_column(chip.inl_coefficients[:, 0]),
        inl_c1=per_column(chip.inl_coefficients[:, 1]),
        adc_of_column=adc,
        inl_table=chip.inl_table,
        correction=None if correction is None else np.ascontiguousarray(correction, dtype=np.float32),
        noise_sigma=np.float32(sigma if use_noise else 0.0),
        noise_key=stream_key(noise_seed) if use_noise else 0,
        hold_keep=np.float32(1.0 - cfg.hold_charge_loss),
    )


def bias_injection(
    chip: ChipInstance, bias: np.ndarray, full_scale: float, dac_gain: np.ndarray | None
) -> tuple[np.ndarray, int]:
    """What the bias DAC adds to each column's ADC input (LSB) for ``bias`` (integer-product units).

    ``dac_gain``: the calibrated gain of each ADC's DAC (None: nominal). Returns the
    per-column value in LSB and how many columns asked for more than the DAC's range.
    """
    cfg = chip.config
    adc = np.arange(bias.size) % cfg.adcs
    gain = np.ones(cfg.adcs) if dac_gain is None else dac_gain
    wanted = np.rint(bias / (full_scale / cfg.magnitude_levels) / (cfg.bias_dac_step_lsb * gain[adc]))
    code = np.clip(wanted, -cfg.bias_dac_max_code, cfg.bias_dac_max_code)
    return dac_output_lsb(chip, code), int(np.count_nonzero(wanted != code))


def dac_output_lsb(chip: ChipInstance, code: np.ndarray) -> np.ndarray:
    """float32 LSB the bias DAC of column m's ADC adds for ``code[m]``: its own gain error
    and the shared SAR reference's gain scale the nominal step."""
    cfg = chip.config
    adc = np.arange(code.size) % cfg.adcs
    actual = (1.0 + chip.bias_dac_gain_error) * (1.0 + chip.adc_gain_error)
    return (code * cfg.bias_dac_step_lsb * actual[adc]).astype(np.float32)
