"""A super-resolution model on the simulated chip: per-pixel sparsified features are zero
rows, so the array and driver energy fall with the level while cycles and conversions
stay; the structured baseline's channels are removed for real, so its cycles fall too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch
from conftest import ROOT
from torch import nn

from cimflow.compress.featreg.sparsify import Sparsifier, calibrate, rank_channels
from cimflow.config import load_params
from cimflow.modelio import ModelSpec
from cimflow.modelref import ModelRef
from cimflow.preprocess import Preprocessor
from cimflow.quantize import load_int8, quantize_model, quantized_layers, save_int8
from cimflow.sr import chip as srchip
from cimflow.sr import data as srdata
from cimflow.sr.inference import y_tensor
from cimflow.stages.cim_common import on_chip, relu_layers

LEVELS = [0.5, 0.9]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small ESPCN in int8, natural test images, and thresholds of both sparsifier kinds."""
    torch.manual_seed(0)
    spec = ModelSpec(ModelRef("ESPCN", module="cimflow.models.espcn", args={"features": [16, 8]}), 1, 0,
                     Preprocessor(0, (0.0,), (1.0,)), (), scale=2)
    model = spec.build().eval()
    for conv in (model.conv1, model.conv2):  # centred biases: a live mix of signs
        nn.init.zeros_(conv.bias)
    images = [(n, srdata.as_rgb(getattr(skimage.data, n)(), n)[:64, :64]) for n in ("astronaut", "coffee")]
    data = srdata.make_pairs(images, "test", 2)
    tables = {}
    for mode in ("threshold", "channel"):
        sparsifier = Sparsifier(model, mode, LEVELS)
        if mode == "channel":
            rank_channels(model, sparsifier, srdata.calibration_patches(data, 32, 0, size=16))
        else:
            calibrate(model, sparsifier, [y_tensor(lr) for lr in data.lr], max_entries=50_000, seed=0)
        tables[mode] = sparsifier.table().assign(mode=mode)
        sparsifier.remove()
    path = tmp_path_factory.mktemp("int8") / "int8.safetensors"
    save_int8(path, quantize_model(model, [srdata.calibration_patches(data, 32, 0, size=16)], 8, 8, 99.99), spec)
    return path, tables, data


def _on_chip(levels: srchip.LevelModels, data: srdata.SrSet) -> dict[str, pd.DataFrame]:
    cim = load_params(ROOT / "params.yaml").cim.model_copy(update={"noise": False})
    relu = relu_layers(levels.spec)
    scales = srchip.ranges_per_level(levels, [srdata.calibration_patches(data, 32, 0)], cim, relu)
    assert list(scales) == levels.labels
    frames = {}
    for label in levels.labels:
        model = levels.build(label)
        plans = on_chip(model, cim.macro, cim, scales[label], None, relu)
        frames[label] = srchip.evaluate_on_chip(label, srchip.ChipPass(model, plans),
                                                srchip.ChipPass(levels.build(label), None), data, cim,
                                                levels.float_at(label))
    return frames


def _per_layer(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    columns = ["cycles", "conversions_full", "conversions_sign_only", "active_input_bits", "energy_array_j",
               "energy_adc_j", "energy_j"]
    return {label: frame.groupby("layer")[columns].sum() for label, frame in frames.items()}


def test_calibration_patches_are_seeded_and_shrink_to_the_smallest_image(exported):
    _, _, data = exported
    a, b = (srdata.calibration_patches(data, 5, seed=3) for _ in range(2))
    assert a.shape == (5, 1, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert srdata.calibration_patches(data, 2, seed=0, size=100).shape == (2, 1, 32, 32)  # LR is 32 x 32
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_per_pixel_sparsity_drives_fewer_rows_and_less_array_energy_at_equal_cycles(exported):
    path, tables, data = exported
    frames = _on_chip(srchip.LevelModels(path, tables["threshold"], "thresholds"), data)
    low, high = (_per_layer(frames)[label] for label in ("0.5", "0.9"))
    fixed = ["cycles", "conversions_full", "conversions_sign_only"]
    assert low[fixed].equals(high[fixed])
    assert np.allclose(low["energy_adc_j"], high["energy_adc_j"])
    assert low.loc["conv1", "active_input_bits"] == high.loc["conv1", "active_input_bits"]  # the image itself
    for layer in ("conv2", "conv3"):  # inputs sparsified at 50% and 90%
        assert high.loc[layer, "active_input_bits"] < 0.5 * low.loc[layer, "active_input_bits"]
        assert high.loc[layer, "energy_array_j"] < low.loc[layer, "energy_array_j"]
    summary = srchip.summarize(pd.concat(frames.values(), ignore_index=True),
                               load_params(ROOT / "params.yaml").cim)["test"]["levels"]
    assert summary["0.9"]["energy_per_image_j"] < summary["0.5"]["energy_per_image_j"]
    assert summary["0.5"]["macs_per_image"] == summary["0.9"]["macs_per_image"]  # ops are the dense work
    for values in summary.values():
        assert np.isfinite(values["psnr_chip"]) and np.isfinite(values["psnr_int8"])
        assert values["energy_system_per_image_j"] > 0


def test_structured_levels_remove_channels_for_real_and_match_the_masked_network(exported):
    path, tables, data = exported
    levels = srchip.LevelModels(path, tables["channel"], "thresholds")
    small = dict(quantized_layers(levels.build("0.9")))
    assert small["conv1"].weight_q.shape[0] == 2 and small["conv2"].weight_q.shape[1] == 2  # ceil(0.1 * 16)
    assert small["conv2"].weight_q.shape[0] == 1 and small["conv3"].weight_q.shape[1] == 1  # ceil(0.1 * 8)
    masked, _ = load_int8(path)
    sparsifier = Sparsifier.from_table(masked, tables["channel"], "thresholds")
    sparsifier.level = 1
    x = y_tensor(data.lr[0])
    with torch.no_grad():
        assert torch.equal(levels.build("0.9")(x), masked(x))  # integer arithmetic: exactly the same
    per_layer = _per_layer(_on_chip(levels, data))
    low, high = per_layer["0.5"], per_layer["0.9"]
    assert high.loc["conv1", "conversions_full"] + high.loc["conv1", "conversions_sign_only"] < \
        low.loc["conv1", "conversions_full"] + low.loc["conv1", "conversions_sign_only"]  # fewer columns
    assert high["energy_j"].sum() < low["energy_j"].sum()
    with pytest.raises(ValueError, match="no level"):
        levels.build("0.7")
