"""The base of every params.yaml schema model.

Strict types, no unknown keys, immutable, and (by convention) no defaults: DVC tracks
values only where params.yaml writes them, so nothing may be filled in by code.
"""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
