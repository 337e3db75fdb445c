"""The base of every params.yaml schema model, and the value types they share.

Strict types, no unknown keys, immutable, and (by convention) no defaults: DVC tracks
values only where params.yaml writes them, so nothing may be filled in by code.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
Seed = Annotated[int, Field(ge=0, lt=2**31)]
