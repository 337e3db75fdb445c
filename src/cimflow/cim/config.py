"""What the CD-CiM macro *is*: one validated, frozen parameter set.

The schema has no defaults on purpose: every value comes from the caller (params.yaml
under ``cim.macro``), so a value can never change without the params file changing.
The documented default set, with the source of every number, is the YAML block in
``cim/README.md``.

Units: analog and ADC errors are in LSB of the layer's ADC (full scale / 2**(adc_bits-1))
or relative (fractions); energies are in joules per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

NonNegative = Annotated[float, Field(ge=0.0)]
PositiveEnergy = Annotated[float, Field(gt=0.0)]


class MacroConfigError(ValueError):
    """Invalid macro parameters; every line names the key, the value and what is allowed."""


class MacroConfig(BaseModel):
    """Organisation, non-idealities and energy constants of one CD-CiM macro."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # Organisation.
    rows: Annotated[int, Field(gt=0)]
    """Rows summed on one charge node: the longest dot product converted at once."""
    adcs: Annotated[int, Field(gt=0)]
    """ADCs (output columns) converting in parallel each cycle; layer column m uses ADC m % adcs."""
    clock_hz: Annotated[float, Field(gt=0.0)]
    """CiM cycle rate: one MAC-and-convert per ADC per cycle."""
    adc_bits: Annotated[int, Field(ge=1, le=16)]
    """Sign + (adc_bits - 1) magnitude bits of the sign-first SAR."""
    fused_relu: bool
    """ReLU in the ADC: a negative sign decision outputs 0 and skips the magnitude bits."""

    # Analog summing node (static per chip, except the noise).
    cap_mismatch_sigma: NonNegative
    """Relative sigma of one unit capacitor; a k-unit capacitor has sigma / sqrt(k)."""
    parasitic_attenuation: Annotated[float, Field(ge=0.0, lt=1.0)]
    """Fractional gain loss of the summing node from its parasitic capacitance."""
    charge_sharing_nonlinearity: NonNegative
    """Compression of the transfer curve y/(1+a|y|): LSB lost at full scale, uncompensated."""
    noise_lsb_rms: NonNegative
    """kT/C plus comparator noise, one Gaussian draw per conversion, in LSB rms."""

    # ADC (static per ADC, drawn from the chip seed).
    adc_offset_lsb_sigma: NonNegative
    """Sigma of the input-referred ADC offset (charge injection, clock feed-through)."""
    adc_gain_error_sigma: NonNegative
    """Sigma of the relative ADC gain error (reference mismatch)."""
    adc_inl_lsb: NonNegative
    """Peak |INL| of each ADC's smooth static transfer-curve error, in LSB."""
    sign_offset_lsb_sigma: NonNegative
    """Sigma of the extra threshold error of the sign (ReLU zero-crossing) decision."""
    sign_trim_step_lsb: Annotated[float, Field(gt=0.0)]
    """Step of the sign-comparator trim DAC set by calibration."""
    sign_trim_bits: Annotated[int, Field(ge=1, le=8)]
    """Resolution of the signed sign-comparator trim DAC."""

    # Bias DAC at the comparator and SAR reference (per ADC).
    bias_dac_bits: Annotated[int, Field(ge=2, le=16)]
    """Resolution of the signed per-column bias DAC (two's-complement codes)."""
    bias_dac_range: Annotated[float, Field(gt=0.0)]
    """Largest bias the DAC adds, as a multiple of the conversion's full scale."""
    bias_dac_gain_sigma: NonNegative
    """Sigma of each ADC's relative bias-DAC gain error; calibration measures it."""

    # Analog accumulation on a hold capacitor (segments of a long reduction).
    hold_charge_loss: Annotated[float, Field(ge=0.0, lt=1.0)]
    """Fraction of the held charge lost at each further hold step."""
    hold_noise_lsb_rms: NonNegative
    """kT/C noise added by each hold step, in LSB rms."""

    # Energy per event (J).
    energy_active_bit_product_j: PositiveEnergy
    """Array: charge switched per bit-product whose input bit and weight bit are both 1."""
    energy_active_input_bit_j: PositiveEnergy
    """Input drivers: per input bit at 1 driven onto a row, once per cycle."""
    energy_sign_decision_j: PositiveEnergy
    """ADC: sampling plus the sign comparison; all an early-stopped conversion costs."""
    energy_magnitude_bit_j: PositiveEnergy
    """ADC: each of the adc_bits - 1 magnitude SAR cycles of a full conversion."""
    energy_digital_per_conversion_j: PositiveEnergy
    """Control, sign logic, output register, correction lookup and clock per conversion."""
    energy_accumulate_j: PositiveEnergy
    """Digital addition of one segment's partial sum when K > rows is split."""
    energy_hold_step_j: PositiveEnergy
    """Analog accumulation: moving one segment's charge onto the hold capacitor."""
    energy_bias_dac_j: PositiveEnergy
    """Bias DAC: setting the reference offset of one conversion."""

    @field_validator("charge_sharing_nonlinearity")
    @classmethod
    def _nonlinearity_below_full_scale(cls, value: float, info: ValidationInfo) -> float:
        bits = info.data.get("adc_bits")
        if bits is not None and value >= 2 ** (bits - 1):
            raise ValueError(
                f"must be below full scale, 2**(adc_bits-1) = {2 ** (bits - 1)} LSB; got {value}"
            )
        return value

    @property
    def bias_dac_max_code(self) -> int:
        return 2 ** (self.bias_dac_bits - 1) - 1

    @property
    def bias_dac_step_lsb(self) -> float:
        """One bias-DAC code in ADC LSB (independent of the layer's full scale)."""
        return self.bias_dac_range * self.magnitude_levels / self.bias_dac_max_code

    @property
    def magnitude_levels(self) -> int:
        """Magnitude codes per sign: full scale is this many LSB."""
        return 2 ** (self.adc_bits - 1)

    @property
    def max_magnitude_code(self) -> int:
        return self.magnitude_levels - 1

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], prefix: str = "cim.macro") -> MacroConfig:
        """Validate a params mapping; errors name ``prefix.key``, the value and what is allowed."""
        if not isinstance(raw, Mapping):
            raise MacroConfigError(f"{prefix}: expected a mapping, got {type(raw).__name__}")
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise MacroConfigError(_format_errors(prefix, exc)) from None


class MappingPolicy(BaseModel):
    """How a layer is placed on the macro: choices of the mapping, not of the silicon."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    bias: Literal["reference", "rows", "digital"]
    """Where a fused layer's bias goes: the bias DAC, spare rows of the sum, or (unfused) digital."""
    accumulation: Literal["digital", "analog"]
    """Long reductions: convert each segment and add digitally, or hold and convert once."""
    segmenting: Literal["balanced", "greedy"]
    """Cut K into equal segments, or into ``rows``-row slices plus a tail."""
    full_scale: Literal["per_layer", "per_segment"]
    """One ADC range per layer, or one per segment (digital accumulation)."""


def _allowed(field: str) -> str:
    """'1..16', '> 0', '>= 0' from a field's numeric constraints."""
    info = MacroConfig.model_fields[field]
    bounds = {type(m).__name__: m for m in info.metadata}
    low = bounds.get("Ge") or bounds.get("Gt")
    high = bounds.get("Le") or bounds.get("Lt")
    if low is not None and high is not None and "Ge" in bounds and "Le" in bounds:
        return f"{low.ge}..{high.le}"
    parts = []
    if low is not None:
        parts.append(f">= {low.ge}" if "Ge" in bounds else f"> {low.gt}")
    if high is not None:
        parts.append(f"<= {high.le}" if "Le" in bounds else f"< {high.lt}")
    return " and ".join(parts) or f"a {info.annotation.__name__}"


def _format_errors(prefix: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        key = ".".join([prefix, *map(str, err["loc"])])
        field = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        elif err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif err["type"] == "value_error":
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        else:
            allowed = _allowed(field) if field in MacroConfig.model_fields else "?"
            lines.append(f"{key}: {err['msg']}; got {err['input']!r}; allowed {allowed}")
    return "\n".join(lines)
