"""Macro parameters: the documented defaults validate, and bad values are rejected by key.

This module also holds the default parameter block as a test fixture; the other
test_cim_* modules import :func:`default_config` from here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from cimflow.cim import MacroConfig, MacroConfigError

README = Path(__file__).resolve().parents[1] / "src" / "cimflow" / "cim" / "README.md"

DEFAULT_MACRO_YAML = """
macro:
  rows: 128
  adcs: 1
  clock_hz: 2.0e+8
  adc_bits: 8
  fused_relu: true
  cap_mismatch_sigma: 0.0066
  parasitic_attenuation: 0.23
  charge_sharing_nonlinearity: 1.0
  noise_lsb_rms: 0.3
  adc_offset_lsb_sigma: 1.0
  adc_gain_error_sigma: 0.01
  adc_inl_lsb: 1.0
  sign_offset_lsb_sigma: 2.0
  sign_trim_step_lsb: 0.25
  sign_trim_bits: 5
  bias_dac_bits: 8
  bias_dac_range: 1.0
  bias_dac_gain_sigma: 0.01
  hold_charge_loss: 0.002
  hold_noise_lsb_rms: 0.02
  energy_active_bit_product_j: 6.348e-15
  energy_active_input_bit_j: 9.766e-15
  energy_sign_decision_j: 1.5e-13
  energy_magnitude_bit_j: 1.214e-13
  energy_digital_per_conversion_j: 6.28e-12
  energy_accumulate_j: 1.0e-13
  energy_hold_step_j: 1.0e-13
  energy_bias_dac_j: 5.0e-14
"""

IDEAL = {
    "cap_mismatch_sigma": 0.0,
    "parasitic_attenuation": 0.0,
    "charge_sharing_nonlinearity": 0.0,
    "noise_lsb_rms": 0.0,
    "adc_offset_lsb_sigma": 0.0,
    "adc_gain_error_sigma": 0.0,
    "adc_inl_lsb": 0.0,
    "sign_offset_lsb_sigma": 0.0,
    "bias_dac_gain_sigma": 0.0,
    "hold_charge_loss": 0.0,
    "hold_noise_lsb_rms": 0.0,
}
"""Overrides that switch every non-ideality off."""


def default_params() -> dict:
    return yaml.safe_load(DEFAULT_MACRO_YAML)["macro"]


def default_config(**overrides: object) -> MacroConfig:
    """The documented defaults, with some values replaced."""
    return MacroConfig.from_mapping({**default_params(), **overrides})


def test_defaults_validate_and_match_the_readme_block() -> None:
    block = README.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block)["macro"] == default_params()
    config = default_config()
    assert config.magnitude_levels == 128 and config.max_magnitude_code == 127


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("rows", 0, "cim.macro.rows: Input should be greater than 0; got 0; allowed > 0"),
        ("rows", -5, "cim.macro.rows:"),
        ("adcs", 0, "cim.macro.adcs:"),
        ("clock_hz", 0.0, "cim.macro.clock_hz:"),
        ("adc_bits", 20, "cim.macro.adc_bits: Input should be less than or equal to 16; got 20; allowed 1..16"),
        ("adc_bits", 0, "cim.macro.adc_bits:"),
        ("cap_mismatch_sigma", -0.01, "cim.macro.cap_mismatch_sigma: Input should be greater than or equal to 0; got -0.01; allowed >= 0"),
        ("noise_lsb_rms", -1.0, "cim.macro.noise_lsb_rms:"),
        ("adc_offset_lsb_sigma", -1.0, "cim.macro.adc_offset_lsb_sigma:"),
        ("adc_gain_error_sigma", -1.0, "cim.macro.adc_gain_error_sigma:"),
        ("adc_inl_lsb", -1.0, "cim.macro.adc_inl_lsb:"),
        ("sign_offset_lsb_sigma", -1.0, "cim.macro.sign_offset_lsb_sigma:"),
        ("parasitic_attenuation", 1.0, "allowed >= 0.0 and < 1.0"),
        ("sign_trim_bits", 9, "cim.macro.sign_trim_bits:"),
        ("energy_magnitude_bit_j", 0.0, "cim.macro.energy_magnitude_bit_j:"),
        ("charge_sharing_nonlinearity", 128.0, "cim.macro.charge_sharing_nonlinearity: must be below full scale"),
        ("rows", 128.0, "cim.macro.rows: Input should be a valid integer"),
        ("rows", "128", "cim.macro.rows:"),
        ("fused_relu", "yes", "cim.macro.fused_relu:"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(key: str, value: object, expected: str) -> None:
    with pytest.raises(MacroConfigError) as error:
        default_config(**{key: value})
    assert expected in str(error.value)


def test_unknown_and_missing_keys_are_named() -> None:
    params = default_params()
    del params["rows"]
    params["row"] = 128
    with pytest.raises(MacroConfigError) as error:
        MacroConfig.from_mapping(params, prefix="cim.chip")
    assert "cim.chip.rows: required key is missing" in str(error.value)
    assert "cim.chip.row: unknown key" in str(error.value)


def test_config_is_frozen() -> None:
    config = default_config()
    with pytest.raises(ValidationError):
        config.rows = 64  # type: ignore[misc]
