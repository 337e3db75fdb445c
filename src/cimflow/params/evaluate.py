"""Schema of params.yaml ``evaluate``: digital (float and int8) evaluation."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cimflow.schema import PositiveInt, StrictModel


class EvaluateParams(StrictModel):
    batch_size: PositiveInt
    confidence_level: Annotated[float, Field(gt=0.0, lt=1.0)]
