"""A measured ADC INL from the file ``cim.measured_inl`` names, in place of the modeled one.

The file is Parquet or CSV with one row per (adc, magnitude code 0..levels): columns
``adc``, ``code``, ``inl_lsb``. It is an input of every stage that builds the chip
(calibrate, map, evaluate_cim, cim_sweep) in both front ends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cimflow.artifacts import ArtifactError, load_table
from cimflow.cim.chip import MeasuredInl
from cimflow.params.cim import CimParams


def measured_inl_inputs(cim: CimParams) -> list[Path]:
    """The measured INL file as a stage input (an empty list for the modeled INL)."""
    return [] if cim.measured_inl is None else [Path(cim.measured_inl)]


def load_measured_inl(cim: CimParams) -> MeasuredInl | None:
    """The measured INL table ``cim.measured_inl`` names (one row per adc and magnitude code
    0..levels), or None for the modeled INL; ArtifactError names the file and the defect."""
    if cim.measured_inl is None:
        return None
    path = Path(cim.measured_inl)
    if path.suffix == ".csv":
        if not path.is_file():
            raise ArtifactError(f"cim.measured_inl: table file not found: {path}")
        try:
            frame = pd.read_csv(path)
        except (ValueError, pd.errors.ParserError) as exc:
            raise ArtifactError(f"cim.measured_inl: {path}: not a readable CSV ({exc})") from exc
    else:
        frame = load_table(path, external=True)
    missing = {"adc", "code", "inl_lsb"} - set(frame.columns)
    if missing:
        raise ArtifactError(f"cim.measured_inl: {path}: missing column(s) {sorted(missing)}")
    adcs = cim.macro.adcs
    codes = sorted(set(frame["code"]))
    complete = len(frame) == adcs * len(codes) and codes == list(range(len(codes))) and len(codes) >= 2
    if not complete or sorted(set(frame["adc"])) != list(range(adcs)) or frame.duplicated(["adc", "code"]).any():
        raise ArtifactError(f"cim.measured_inl: {path}: needs exactly one row per adc 0..{adcs - 1} and code "
                            f"0..levels (got {len(frame)} rows, adcs {sorted(set(frame['adc']))[:8]}, "
                            f"codes {codes[:3]}..{codes[-3:]})")
    table = frame.pivot(index="adc", columns="code", values="inl_lsb").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(table)):
        raise ArtifactError(f"cim.measured_inl: {path}: inl_lsb must be finite numbers")
    return MeasuredInl(table)
