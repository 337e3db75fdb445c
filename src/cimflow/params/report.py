"""Schema of params.yaml ``report``: the generated report and its plots."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cimflow.schema import StrictModel


class ReportParams(StrictModel):
    title: Annotated[str, Field(min_length=1)]
    plot_dpi: Annotated[int, Field(ge=50, le=600)]
