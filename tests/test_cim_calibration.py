"""Calibration: trim and correction tables cut the error, have a fixed schema, are checked on use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_cim_config import IDEAL, default_config

from cimflow.cim import CalibrationTables, ChipInstance, CimMacro, calibrate


def _rms_error_lsb(macro: CimMacro, seed: int) -> float:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (2048, 128)).astype(np.int8)
    w = rng.integers(-128, 128, (128, 32)).astype(np.int8)
    ideal = x.astype(np.int64) @ w.astype(np.int64)
    full_scale = 4.0 * float(ideal.std())
    out, _ = macro.matmul(x, w, full_scale, relu=False, noise=True, rng_seed=seed)
    lsb = full_scale / macro.config.magnitude_levels
    return float(np.sqrt(np.mean((out - np.clip(ideal, -full_scale, full_scale)) ** 2)) / lsb)


@pytest.mark.parametrize("overrides", [{}, {"parasitic_attenuation": 0.0}, {"adcs": 3, "adc_bits": 9}])
def test_calibration_cuts_rms_error_more_than_twofold(overrides: dict) -> None:
    config = default_config(**overrides)
    tables = calibrate(config, 21)
    raw = _rms_error_lsb(CimMacro(config, 21), seed=1)
    corrected = _rms_error_lsb(CimMacro(config, 21, tables), seed=1)
    assert corrected < raw / 2
    assert corrected < 0.75  # close to noise (0.3 LSB) plus quantisation (0.29 LSB)


def test_tables_have_one_row_per_adc_and_code() -> None:
    config = default_config(adcs=2, adc_bits=6)
    tables = calibrate(config, 4)
    codes = tables.codes
    assert list(codes.columns) == ["chip_seed", "adc", "code", "corrected_value", "sample_count"]
    assert len(codes) == 2 * 63
    assert sorted(codes.code.unique()) == list(range(-31, 32))
    assert (codes.chip_seed == 4).all()
    for _, per_adc in codes.groupby("adc"):
        assert np.all(np.diff(per_adc.sort_values("code").corrected_value) > 0)
    assert codes.sample_count.sum() == 2 * 16 * 63
    assert list(tables.sign_trim.columns) == ["chip_seed", "adc", "trim_code", "trim_lsb", "bias_dac_gain"]
    assert tables.sign_trim.trim_code.between(-16, 15).all()


def test_sign_trim_cancels_the_zero_crossing_offset() -> None:
    config = default_config(**{**IDEAL, "sign_offset_lsb_sigma": 1.5, "adc_offset_lsb_sigma": 1.0}, adcs=8)
    chip = ChipInstance(config, 9)
    tables = calibrate(config, 9)
    threshold = chip.sign_offset_lsb + chip.adc_offset_lsb
    residual = threshold - tables.trim_lsb(config, 9)
    in_range = np.abs(threshold) < 16 * config.sign_trim_step_lsb
    assert np.all(np.abs(residual[in_range]) <= config.sign_trim_step_lsb)


def test_calibration_is_deterministic() -> None:
    config = default_config()
    first, again = calibrate(config, 5), calibrate(config, 5)
    pd.testing.assert_frame_equal(first.codes, again.codes)
    pd.testing.assert_frame_equal(first.sign_trim, again.sign_trim)
    assert not first.codes.equals(calibrate(config, 6).codes)


def test_tables_must_fit_the_chip() -> None:
    config = default_config()
    tables = calibrate(config, 5)
    with pytest.raises(ValueError, match="no rows for chip_seed 6"):
        CimMacro(config, 6, tables)
    with pytest.raises(ValueError, match="do not fit"):
        CimMacro(default_config(adc_bits=9), 5, tables)
    incomplete = CalibrationTables(codes=tables.codes.iloc[1:], sign_trim=tables.sign_trim)
    with pytest.raises(ValueError, match="do not fit"):
        CimMacro(config, 5, incomplete)
    with pytest.raises(ValueError, match="lacks column"):
        CimMacro(config, 5, CalibrationTables(codes=tables.codes.drop(columns="code"), sign_trim=tables.sign_trim))


def test_bias_dac_gain_is_measured_and_divided_out() -> None:
    """A 5% DAC gain error: calibration finds it, and a calibrated bias lands within 1 LSB.

    The DAC adds after the summing node, so the correction table (which undoes the node's
    parasitic gain loss) reads it 1 / (1 - attenuation) too large: the measured gain
    holds that factor too, and dividing by it puts the bias where it belongs.
    """
    config = default_config(adcs=3, bias_dac_gain_sigma=0.05)
    chip = ChipInstance(config, 8)
    tables = calibrate(config, 8)
    measured = tables.bias_dac_gain(config, 8) * (1 - config.parasitic_attenuation)
    np.testing.assert_allclose(measured, 1.0 + chip.bias_dac_gain_error, atol=0.01)
    full_scale = 1e5
    lsb = full_scale / config.magnitude_levels
    bias = np.array([40.0, -55.0, 70.0]) * lsb  # tens of LSB: a 5% error would be 2-3.5 LSB
    zero = np.zeros((4096, 16), np.int8)
    weights = np.ones((16, 3), np.int8)
    errors = {}
    for label, cal in (("raw", None), ("calibrated", tables)):
        out, _ = CimMacro(config, 8, cal).matmul(zero, weights, full_scale, relu=False, noise=True, rng_seed=2,
                                                 bias=bias)
        errors[label] = np.abs(out.mean(axis=0) - bias) / lsb
    assert errors["calibrated"].max() < 1.0
    assert errors["raw"].max() > 1.5
