"""A measured ADC INL from a file: read and checked by name, and an input of every chip stage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from cimflow.artifacts import ArtifactError, save_table
from cimflow.config import ParamsError, load_params
from cimflow.measured_inl import load_measured_inl
from conftest import ROOT, copy_project, edit_params, run

CHIP_STAGES = ("calibrate", "map-digits-0-baseline", "evaluate_cim-digits-0-baseline")


def _cim(path: str | None, **overrides):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["cim"]["measured_inl"] = path
    raw["cim"]["macro"] |= overrides
    return raw


def _table(adcs: int = 1, levels: int = 128) -> pd.DataFrame:
    adc, code = np.meshgrid(np.arange(adcs), np.arange(levels + 1), indexing="ij")
    return pd.DataFrame({"adc": adc.ravel(), "code": code.ravel(), "inl_lsb": np.sin(code.ravel() / 20.0)})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_measured_table_loads_from_csv_or_parquet(tmp_path, suffix):
    path = tmp_path / f"inl{suffix}"
    frame = _table(adcs=2)
    frame.to_csv(path, index=False) if suffix == ".csv" else save_table(path, frame)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(_cim(str(path), adcs=2)))
    inl = load_measured_inl(load_params(params_file).cim)
    assert inl.inl_lsb.shape == (2, 129)
    np.testing.assert_allclose(inl.inl_lsb[1], np.sin(np.arange(129) / 20.0))


def test_bad_tables_are_named(tmp_path):
    params_file = tmp_path / "params.yaml"
    path = tmp_path / "inl.csv"
    params_file.write_text(yaml.safe_dump(_cim(str(path))))
    cim = load_params(params_file).cim
    with pytest.raises(ArtifactError, match="not found"):
        load_measured_inl(cim)
    _table().drop(columns="inl_lsb").to_csv(path, index=False)
    with pytest.raises(ArtifactError, match=r"inl\.csv: missing column\(s\) \['inl_lsb'\]"):
        load_measured_inl(cim)
    _table().drop(index=5).to_csv(path, index=False)
    with pytest.raises(ArtifactError, match="one row per adc"):
        load_measured_inl(cim)
    params_file.write_text(yaml.safe_dump(_cim(str(tmp_path / "inl.txt"))))
    with pytest.raises(ParamsError, match="cim.measured_inl"):
        load_params(params_file)


def test_the_table_is_an_input_of_every_stage_that_builds_the_chip(tmp_path):
    project = copy_project(tmp_path / "project")
    _table().to_csv(project / "inl.csv", index=False)
    edit_params(project, "cim.measured_inl", "inl.csv")
    result = run(["cimflow", "dvc-yaml"], cwd=project)
    assert result.returncode == 0, result.stderr
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for name in CHIP_STAGES:
        assert "inl.csv" in stages[name]["deps"], name
    assert "inl.csv" not in stages["export-digits-0-baseline"]["deps"]
