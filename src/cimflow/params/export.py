"""Schema of params.yaml ``export``: post-training int8 quantization."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cimflow.schema import PositiveInt, StrictModel


class ExportParams(StrictModel):
    weight_bits: Annotated[int, Field(ge=2, le=8)]
    activation_bits: Annotated[int, Field(ge=2, le=8)]
    calibration_samples: PositiveInt
    activation_percentile: Annotated[float, Field(gt=50.0, le=100.0)]
