"""The report over several seeds, built from artifacts as the stages write them."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from cimflow import layout
from cimflow.artifacts import save_json, save_table
from cimflow.report import ENERGY_PARTS
from conftest import ROOT

SEEDS = (0, 1, 2)


def _write_run(seed: int, method: str, accuracy: float) -> Path:
    ids = {"task": "digits", "seed": seed, "method": method}
    metrics = layout.path(layout.METRICS, **ids)
    save_json(metrics, ids | {
        "model": "lenet5", "test_samples": 450, "float_accuracy": accuracy, "float_accuracy_low": accuracy - 0.02,
        "float_accuracy_high": accuracy + 0.01, "int8_accuracy": accuracy - 0.002, "weights": 1000,
        "nonzero_weights": 10 if method != "baseline" else 1000, "weight_compression": 100.0 if method != "baseline" else 1.0,
        "parameters": 1100, "nonzero_parameters": 110, "macs": 5000, "float_bytes": 4400, "int8_bytes": 1300,
        "dense_bytes": 1300, "stored_bytes": 200 if method != "baseline" else 1300, "storage_encoding": "fc: dense 8b"})
    save_json(layout.path(layout.CIM_METRICS, **ids), ids | {
        "test_samples": 450, "int8_accuracy": accuracy - 0.002, "cim_uncalibrated_accuracy": accuracy - 0.2,
        "cim_calibrated_accuracy": accuracy - 0.004, "energy_per_inference_j": 2e-7, "latency_per_inference_s": 1e-4,
        "gops": 40.0, "tops_per_w": 12.0, "sign_only_fraction": 0.0, "energy_per_inference_no_fused_relu_j": 2e-7,
        "conversions_per_inference": 3000.0, "tops_per_w_system": 6.0, "tops_per_w_reference_workload": 10.29,
        "energy_system_per_inference_j": 2e-7,
        **{f"energy_{part}_per_inference_j": 2e-8 for part in ENERGY_PARTS}})
    layers = pd.DataFrame({"layer": ["conv", "fc"], "sign_only_fraction": [0.5, 0.0],
                           **{f"energy_{part}_j": [1e-8, 2e-8] for part in ("array", "input", "adc", "digital")}})
    save_table(layout.path(layout.CIM_MAPPING, **ids), layers)
    system = pd.DataFrame({"operator": ["conv", "pool", "fc"], "kind": ["layer", "pool", "layer"],
                           **{f"energy_{part}_j": [1e-9, 2e-9, 3e-9] for part in ENERGY_PARTS[4:]}})
    save_table(layout.path(layout.CIM_SYSTEM, **ids), system)
    if method == "baseline":
        save_table(layout.path(layout.HISTORY, **ids), pd.DataFrame({
            "epoch": [1, 2], "lr": [0.1, 0.0], "train_loss": [1.0, 0.5 + seed / 100], "train_accuracy": [0.6, 0.9],
            "val_loss": [1.1, 0.6], "val_accuracy": [0.6, accuracy]}))
    else:
        save_table(layout.path(layout.STEPS, **ids), pd.DataFrame({
            "step": [1, 1], "phase": ["retrain", "retrain"], "layer": ["fc", "fc"], "target_ratio": [0.99, 0.99],
            "nonzeros": [10, 10], "total": [1000, 1000], "val_accuracy": [accuracy, accuracy]}))
    return metrics


@pytest.fixture
def in_tmp(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    old = Path.cwd()
    os.chdir(tmp_path)
    os.environ["CIMFLOW_TRACKING"] = "off"
    yield tmp_path
    os.environ.pop("CIMFLOW_TRACKING")
    os.chdir(old)


def test_report_gives_seed_means_paired_intervals_and_every_seed(in_tmp):
    from cimflow.stages import report

    files = [_write_run(s, "baseline", a) for s, a in zip(SEEDS, (0.96, 0.98, 0.97), strict=True)]
    files += [_write_run(s, "admm_prune", a) for s, a in zip(SEEDS, (0.95, 0.96, 0.96), strict=True)]
    report.run(files, Path("params.yaml"))
    text = (in_tmp / layout.REPORT_MD).read_text()
    assert "| digits | baseline | 3 | 97.00 ± 1.00% |" in text
    # admm - baseline per seed: -1, -2, -1 points: mean -1.33, t interval over 3 seeds
    assert "| digits | admm_prune | baseline (float) | 3 | -1.33 pt | 0.58 pt | [-2.77, +0.10] pt |" in text
    assert text.count("| digits | admm_prune | ") >= 3 + 2  # per-seed rows and paired rows
    for plot in (layout.PLOT_ACCURACY_SIZE, layout.PLOT_TRAINING, layout.PLOT_COMPRESSION, layout.PLOT_BITWIDTHS,
                 layout.PLOT_CIM_SWEEP, layout.PLOT_CIM_LAYERS):
        assert (in_tmp / plot).stat().st_size > 1000


def _write_point(seed: int, method: str, target: int, accuracy: float) -> Path:
    ids = {"task": "digits", "seed": seed, "method": method, "target": target}
    path = layout.path(layout.SWEEP_METRICS, **ids)
    save_json(path, ids | {"test_samples": 450, "float_accuracy": accuracy, "float_accuracy_low": accuracy - 0.02,
                           "float_accuracy_high": accuracy + 0.01, "weights": 10000, "nonzero_weights": 10000 // target,
                           "weight_compression": 10000 / (10000 // target)})
    return path


def test_ratio_sweep_states_where_admm_separates_beyond_the_paired_interval(in_tmp):
    from cimflow.stages import report

    files = [_write_run(s, "baseline", a) for s, a in zip(SEEDS, (0.97, 0.98, 0.97), strict=True)]
    points = []
    for seed in SEEDS:  # at 50x ADMM ties (differences +1, -1, 0 pt); at 400x it leads by 5-7 points
        points += [_write_point(seed, "admm_prune", 50, 0.96 + (seed == 0) / 100 - (seed == 1) / 100),
                   _write_point(seed, "magnitude_one_shot", 50, 0.96),
                   _write_point(seed, "admm_prune", 400, 0.90 + seed / 100),
                   _write_point(seed, "magnitude_one_shot", 400, 0.84 + seed / 200)]
    report.run(files, Path("params.yaml"), sweep_files=points)
    text = (in_tmp / layout.REPORT_MD).read_text()
    assert "digits: ADMM above every magnitude pruner beyond the interval at 400x." in text
    # ADMM at 400x: 90, 91, 92 % -> mean 91.00, t interval +-2.48; paired to the baseline: -7, -7, -5 pt
    assert "| digits | admm_prune | 400x | 3 | 400.0x | 91.00% [88.52, 93.48] | -6.33 pt [-9.20, -3.46] |" in text
    assert (in_tmp / layout.PLOT_RATIO_SWEEP).stat().st_size > 1000

    report.run(files, Path("params.yaml"), sweep_files=[p for p in points if "seed0" in str(p)])
    assert "digits: one seed, so no interval" in (in_tmp / layout.REPORT_MD).read_text()
