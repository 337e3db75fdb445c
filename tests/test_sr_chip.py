"""A super-resolution model on the simulated chip: sparsified features are zero rows, so
the array and driver energy fall with the level while cycles and conversions stay."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from conftest import ROOT
from torch import nn

from cimflow.cim.simulator import CimMacro
from cimflow.compress.featreg.sparsify import Sparsifier, calibrate
from cimflow.config import load_params
from cimflow.graph import relu_follows
from cimflow.hardware import attach_cim
from cimflow.models import ESPCN
from cimflow.quantize import fold_batchnorm, quantize_model
from cimflow.sr import chip as srchip
from cimflow.sr import data as srdata
from cimflow.sr.inference import y_tensor


@pytest.fixture(scope="module")
def sparse_int8():
    """A small ESPCN in int8 with a two-level sparsifier, and natural test images."""
    torch.manual_seed(0)
    model = ESPCN(2, features=(16, 8)).eval()
    for conv in (model.conv1, model.conv2):  # centred biases: a live mix of signs
        nn.init.zeros_(conv.bias)
    images = [(n, srdata.as_rgb(getattr(skimage.data, n)(), n)[:64, :64]) for n in ("astronaut", "coffee")]
    data = srdata.make_pairs(images, "test", 2)
    sparsifier = Sparsifier(model, "threshold", [0.5, 0.9])
    calibrate(model, sparsifier, [y_tensor(lr) for lr in data.lr], max_entries=50_000, seed=0)
    table = sparsifier.table().assign(mode="threshold")
    sparsifier.remove()
    qmodel = quantize_model(model, [srdata.calibration_patches(data, 32, 0, size=16)], 8, 8, 99.99)
    return qmodel, table, data, model


def test_calibration_patches_are_seeded_and_shrink_to_the_smallest_image(sparse_int8):
    _, _, data, _ = sparse_int8
    a, b = (srdata.calibration_patches(data, 5, seed=3) for _ in range(2))
    assert a.shape == (5, 1, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert srdata.calibration_patches(data, 2, seed=0, size=100).shape == (2, 1, 32, 32)  # LR is 32 x 32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_sparser_levels_drive_fewer_rows_and_less_array_energy_at_equal_cycles(sparse_int8):
    qmodel, table, data, model = sparse_int8
    cim = load_params(ROOT / "params.yaml").cim
    relu = relu_follows(fold_batchnorm(copy.deepcopy(model)))
    digital_model = copy.deepcopy(qmodel)
    digital = srchip.ChipPass(digital_model, None, Sparsifier.from_table(digital_model, table, "table"))
    scales = srchip.ranges_per_level(digital_model, digital.sparsifier, [srdata.calibration_patches(data, 32, 0)],
                                     cim, relu)
    assert list(scales) == ["0.5", "0.9"]
    per_level = {}
    for label in scales:
        chip_model = copy.deepcopy(qmodel)
        plans = attach_cim(chip_model, CimMacro(cim.macro, 1), scales[label], relu, cim.mapping, False, 0)
        chip = srchip.ChipPass(chip_model, plans, Sparsifier.from_table(chip_model, table, "table"))
        per_level[label] = srchip.evaluate_on_chip(label, chip, digital, data, cim, model)
    sums = {label: frame.groupby("layer")[["cycles", "conversions_full", "conversions_sign_only",
                                           "active_input_bits", "energy_array_j", "energy_adc_j", "energy_j"]].sum()
            for label, frame in per_level.items()}
    low, high = sums["0.5"], sums["0.9"]
    assert low[["cycles", "conversions_full", "conversions_sign_only"]].equals(
        high[["cycles", "conversions_full", "conversions_sign_only"]])
    assert np.allclose(low["energy_adc_j"], high["energy_adc_j"])
    assert low.loc["conv1", "active_input_bits"] == high.loc["conv1", "active_input_bits"]  # the image itself
    for layer in ("conv2", "conv3"):  # inputs sparsified at 50% and 90%
        assert high.loc[layer, "active_input_bits"] < 0.5 * low.loc[layer, "active_input_bits"]
        assert high.loc[layer, "energy_array_j"] < low.loc[layer, "energy_array_j"]
    assert high["energy_j"].sum() < low["energy_j"].sum()
    summary = srchip.summarize(pd.concat(per_level.values(), ignore_index=True), cim)["test"]["levels"]
    assert summary["0.9"]["energy_per_image_j"] < summary["0.5"]["energy_per_image_j"]
    assert summary["0.5"]["macs_per_image"] == summary["0.9"]["macs_per_image"]  # ops are the dense work
    for values in summary.values():
        assert np.isfinite(values["psnr_chip"]) and np.isfinite(values["psnr_int8"])
        assert values["energy_system_per_image_j"] > 0

