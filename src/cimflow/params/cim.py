"""Schema of params.yaml ``cim``: the macro, its chip instance, calibration, mapping and sweep."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from cimflow.cim.config import MacroConfig, MappingPolicy
from cimflow.methods import METHODS as METHOD_TABLE
from cimflow.schema import PositiveInt, Seed, StrictModel

METHODS = tuple(METHOD_TABLE)


class CimCalibrationParams(StrictModel):
    samples_per_code: PositiveInt
    trim_repeats: PositiveInt


class CimSweepParams(StrictModel):
    methods: Annotated[list[Literal[METHODS]], Field(min_length=1)]
    adc_bits: Annotated[list[Annotated[int, Field(ge=1, le=16)]], Field(min_length=1)]
    cap_mismatch_sigma: Annotated[list[Annotated[float, Field(ge=0.0)]], Field(min_length=1)]
    rows: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]
    bias_dac_bits: Annotated[list[Annotated[int, Field(ge=2, le=16)]], Field(min_length=1)]
    accumulation: Annotated[list[Literal["digital", "analog"]], Field(min_length=1)]
    test_images: PositiveInt


PositiveEnergy = Annotated[float, Field(gt=0.0)]


class SystemParams(StrictModel):
    """Capacity and energy per event outside the macro (``cim.system``; see cimflow.peripheral)."""

    weight_capacity_bytes: PositiveInt
    """Weight bytes the macro holds at once."""
    weight_reuse_inferences: PositiveInt
    """Inferences that share one weight load when the model does not fit."""
    energy_weight_write_byte_j: PositiveEnergy
    energy_buffer_byte_j: PositiveEnergy
    energy_requantize_j: PositiveEnergy
    energy_pool_element_j: PositiveEnergy
    energy_residual_add_j: PositiveEnergy


class CimParams(StrictModel):
    macro: MacroConfig
    mapping: MappingPolicy
    system: SystemParams
    measured_inl: str | None
    """Parquet or CSV (adc, code, inl_lsb) of a measured ADC INL, replacing the modeled one; None: modeled."""
    chip_seed: Seed
    calibration: CimCalibrationParams
    full_scale_percentile: Annotated[float, Field(gt=50.0, le=100.0)]
    calibration_images: PositiveInt
    noise: bool
    noise_seed: Seed
    batch_size: PositiveInt
    sweep: CimSweepParams

    @field_validator("measured_inl")
    @classmethod
    def _table_format(cls, value: str | None) -> str | None:
        if value is not None and not value.endswith((".parquet", ".csv")):
            raise ValueError(f"must name a .parquet or .csv file (adc, code, inl_lsb); got {value!r}")
        return value
