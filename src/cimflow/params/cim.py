"""Schema of params.yaml ``cim``: the macro, its chip instance, calibration, mapping and sweep."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cimflow.cim.config import MacroConfig, MappingPolicy
from cimflow.methods import METHODS as METHOD_TABLE
from cimflow.peripheral import SystemParams
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


class CimParams(StrictModel):
    macro: MacroConfig
    mapping: MappingPolicy
    system: SystemParams
    chip_seed: Seed
    calibration: CimCalibrationParams
    full_scale_percentile: Annotated[float, Field(gt=50.0, le=100.0)]
    calibration_images: PositiveInt
    noise: bool
    noise_seed: Seed
    batch_size: PositiveInt
    sweep: CimSweepParams
