"""Super-resolution tasks in the DAG: params checks, image sets as artifacts, aligned
training patches, and the embedded task end to end (dense and Feature Regularization)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, copy_project, run, sr_smoke_params

from cimflow import layout
from cimflow.artifacts import ArtifactError, load_json, load_table, save_tensors
from cimflow.config import ParamsError, parse_params
from cimflow.data.split import DataError
from cimflow.methods import SUPER_RESOLUTION
from cimflow.sr import data as srdata
from cimflow.sr.objective import SuperResolution, dihedral


def test_sr_task_runs_only_sr_methods(default_params):
    params = parse_params(default_params)
    assert params.kind("sr_embedded") == SUPER_RESOLUTION
    assert params.task_methods("sr_embedded") == ["sr_dense", "featreg", "sr_channel"]
    assert not {"sr_dense", "featreg", "sr_channel"} & set(params.task_methods("digits"))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["train"]["sr_embedded"].update(patch_size=63),
     r"train.sr_embedded.patch_size \(63\) is not a multiple of data.sr_embedded.scale \(2\)"),
    (lambda p: p["train"].update(sr_embedded=p["train"]["digits"]),
     r"train.sr_embedded: a super_resolution task needs a super-resolution recipe"),
    (lambda p: p["featreg"].pop("sr_embedded"),
     r"no 'featreg.sr_embedded' entry, needed by \['featreg', 'sr_channel'\]"),
    (lambda p: p["data"]["sr_embedded"].update(scale=5), r"data.sr_embedded.scale"),
    (lambda p: p["featreg"]["sr_embedded"].update(levels=[0.9, 0.5]), r"featreg.sr_embedded.levels"),
])
def test_bad_sr_params_are_named(default_params, edit, message):
    edit(default_params)
    with pytest.raises(ParamsError, match=message):
        parse_params(default_params)


def _images(n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(f"im{i}", rng.integers(0, 256, size=(37 + i, 41, 3), dtype=np.uint8)) for i in range(n)]


def test_pairs_are_modcropped_and_round_trip(tmp_path):
    data = srdata.make_pairs(_images(3), "train", 3)
    assert [hr.shape for hr in data.hr] == [(36, 39, 3), (36, 39, 3), (39, 39, 3)]
    assert [lr.shape for lr in data.lr] == [(12, 13, 3), (12, 13, 3), (13, 13, 3)]
    path = tmp_path / "train.safetensors"
    srdata.save_sr_set(path, data, "test")
    back = srdata.load_sr_set(path)
    assert back.names == data.names and back.scale == 3
    assert all(np.array_equal(a, b) for a, b in zip(back.hr + back.lr, data.hr + data.lr, strict=True))
    save_tensors(tmp_path / "other.safetensors", {"x": np.zeros(3, dtype=np.uint8)}, {"format": "something"})
    with pytest.raises(ArtifactError, match="not a cimflow super-resolution data file"):
        srdata.load_sr_set(tmp_path / "other.safetensors")


def test_folder_loading_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        srdata.load_folder(tmp_path / "missing")
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"a\.png: not a readable image"):
        srdata.load_folder(tmp_path)


def test_hold_out_is_seeded_and_disjoint():
    images = _images(10)
    train, val = srdata.hold_out(images, 0.2, seed=4)
    again = srdata.hold_out(images, 0.2, seed=4)
    assert [n for n, _ in val] == [n for n, _ in again[1]] and len(val) == 2
    assert not {n for n, _ in train} & {n for n, _ in val}
    with pytest.raises(DataError, match="leaves no training image"):
        srdata.hold_out(images[:1], 0.5, seed=0)


def test_training_patches_are_aligned_with_their_targets():
    """HR patch (y*s.., x*s..) must be the region the LR patch came from: with an HR image
    whose every s x s block is constant, downscaling is exact and LR == block value."""
    s = 2
    rng = np.random.default_rng(0)
    blocks = rng.integers(20, 230, size=(40, 48), dtype=np.uint8)
    hr = np.repeat(np.repeat(blocks, s, 0), s, 1)
    hr = np.repeat(hr[:, :, None], 3, axis=2)
    train = srdata.SrSet((hr,), (hr[::s, ::s].copy(),), ("blocks",), ("train",), s)
    objective = SuperResolution(train, train, patch_size=16, patches_per_epoch=12)
    batches = list(objective.epoch(torch.Generator().manual_seed(0), 5, torch.device("cpu")))
    assert [len(x) for x, _, _ in batches] == [5, 5, 2]
    for lr, target, _ in batches:
        assert lr.shape[-2:] == (8, 8) and target.shape[-2:] == (16, 16)
        assert torch.equal(target[:, :, ::s, ::s], lr)  # same region, same flip/rotation


def test_dihedral_gives_eight_distinct_views():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert len({tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}) == 8


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_embedded_sr_pipeline_end_to_end(tmp_path):
    project = copy_project(tmp_path / "p", sr_smoke_params)
    result = run(["snakemake", "--cores", "2"], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    base = project / "results" / "sr_embedded" / "seed0"
    dense, sparse = (load_json(base / m / "sr_metrics.json") for m in ("sr_dense", "featreg"))
    assert dense["kind"] == "super_resolution" and dense["scale"] == 2
    levels = sparse["sets"]["embedded"]["levels"]
    assert list(levels) == ["0.5", "0.8"]
    assert levels["0.8"]["feature_sparsity"] > levels["0.5"]["feature_sparsity"]
    assert levels["0.8"]["sparse_macs"] < levels["0.5"]["sparse_macs"] < levels["0.5"]["dense_macs"]
    chip = load_json(base / "featreg" / "sr_cim_metrics.json")["sets"]["embedded"]["levels"]
    assert list(chip) == ["0.5", "0.8"]
    assert chip["0.8"]["energy_array_per_image_j"] < chip["0.5"]["energy_array_per_image_j"]
    assert chip["0.8"]["cycles_per_image"] == chip["0.5"]["cycles_per_image"]
    assert set(load_table(base / "featreg" / "sr_cim_mapping.parquet")["level"]) == {"0.5", "0.8"}
    assert "dense" in load_json(base / "sr_dense" / "sr_cim_metrics.json")["sets"]["embedded"]["levels"]
    thresholds = load_table(base / "featreg" / "thresholds.parquet")
    assert set(thresholds["level"]) == {0.5, 0.8} and set(thresholds["mode"]) == {"threshold"}
    summary = (project / layout.REPORT_MD).read_text()
    assert "Super resolution: Feature Regularization" in summary
    assert "| sr_embedded | embedded | 2 | featreg |" in summary
    assert "Super resolution on the chip" in summary
    assert "## Results" not in summary  # no accuracy-scored task: its sections are left out
    # same params and seed -> same artifacts
    before = {p: _sha(base / p) for p in ("sr_dense/model.safetensors", "featreg/model.safetensors",
                                          "featreg/thresholds.parquet", "featreg/sr_metrics.json",
                                          "featreg/int8.safetensors", "featreg/sr_cim_mapping.parquet",
                                          "featreg/sr_cim_metrics.json")}
    result = run(["snakemake", "--cores", "2", "--forcerun", "sr_dense"], cwd=project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p: _sha(base / p) for p in before} == before
    dry = run(["snakemake", "--cores", "2", "-n"], cwd=project)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_sr_cli_rejects_a_classification_method(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(yaml.safe_load((ROOT / "params.yaml").read_text())))
    result = run(["cimflow", "sr_train", "--task", "sr_embedded", "--seed", "0", "--method", "baseline"], cwd=tmp_path)
    assert result.returncode != 0 and "invalid choice: 'baseline'" in result.stderr
