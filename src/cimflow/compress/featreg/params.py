"""The params.yaml schema of ``featreg.<task>`` (super-resolution tasks), apart from the
algorithm so that validating params.yaml loads no torch."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from cimflow.schema import Fraction, PositiveInt, StrictModel


class FeatRegParams(StrictModel):
    """One model for several sparsity levels, fine-tuned from the dense network.

    ``mode``: ``threshold`` zeroes the entries below a per-layer threshold that a
    controller keeps at the level's quantile (the kept count varies per pixel with the
    input); ``topk`` keeps the ``ceil((1 - level) C)`` largest channels at every pixel.
    ``weight`` scales the feature regularizer (the dropped magnitude); ``momentum`` is the
    controller's running-average factor for the thresholds used at inference.
    """

    mode: Literal["threshold", "topk"]
    levels: Annotated[list[Fraction], Field(min_length=1)]
    weight: Annotated[float, Field(ge=0.0)]
    momentum: Fraction
    epochs: PositiveInt
    lr: Annotated[float, Field(gt=0.0, le=1.0)]

    @field_validator("levels")
    @classmethod
    def _ascending(cls, levels: list[float]) -> list[float]:
        if levels != sorted(set(levels)):
            raise ValueError(f"levels must be strictly ascending, got {levels}")
        return levels
