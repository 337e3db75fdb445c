"""Evaluation statistics."""

import pytest
import torch

from cimflow.evaluate import count_parameters, count_weights, storage, wilson_interval
from cimflow.models import build_model
from cimflow.quantize import quantize_model


def test_wilson_interval_matches_reference_values():
    # 95% Wilson interval for 81/100 (standard textbook value 0.7222 .. 0.8749)
    low, high = wilson_interval(81, 100, 0.95)
    assert low == pytest.approx(0.7222, abs=1e-4) and high == pytest.approx(0.8749, abs=1e-4)
    low, high = wilson_interval(450, 450, 0.95)
    assert high == 1.0 and 0.99 < low < 1.0


def test_nonzero_count_and_int8_size():
    model = build_model("lenet5", 1, 10, 28)
    with torch.no_grad():
        model.fc1.weight[:100] = 0
    assert count_parameters(model) == (431_080, 431_080 - 100 * 800)
    qmodel = quantize_model(model, [torch.randn(8, 1, 28, 28)], 8, 8, 100.0)
    weights = 20 * 25 + 50 * 500 + 500 * 800 + 10 * 500
    float_extras = 4 * (2 * (20 + 50 + 500 + 10) + 4)  # scale + bias per channel, input scale per layer
    assert storage(qmodel).dense_bytes == storage(qmodel).int8_bytes == weights + float_extras


def test_sparse_storage_counts_only_nonzero_codes_plus_occupancy_bits():
    model = build_model("lenet5", 1, 10, 28)
    with torch.no_grad():
        model.fc1.weight[:, :700] = 0  # 350,000 of the 400,000 fc1 weights
    qmodel = quantize_model(model, [torch.randn(8, 1, 28, 28)], 8, 8, 100.0)
    layers = storage(qmodel).layers.set_index("layer")
    fc1 = layers.loc["fc1"]
    nonzero = int(torch.count_nonzero(qmodel.fc1.weight_q))
    assert fc1["bitmask_bytes"] == nonzero + 400_000 // 8 + fc1["side_bytes"]
    assert fc1["sparse_bytes"] == min(fc1["dense_bytes"], fc1["bitmask_bytes"], fc1["relative_bytes"])
    assert fc1["sparse_bytes"] < fc1["dense_bytes"] and layers.loc["conv1", "encoding"] == "dense"
    assert count_weights(model) == (430_500, 430_500 - 350_000)
