"""Storage sizes: dense at the real width, bitmask and relative-index sparse encodings, by hand."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cimflow.evaluate import relative_index_entries, storage
from cimflow.quantize import LayerCodes, quantize_model


def _fixed_linear(codes: np.ndarray, bits: int, scale: float = 0.5) -> nn.Module:
    """A one-Linear integer model whose weights are exactly ``codes * scale`` at ``bits``."""
    layer = nn.Linear(codes.shape[1], codes.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(codes.astype(np.float32)) * scale)
    fixed = {"0": LayerCodes(codes.astype(np.int8), scale, bits)}
    return quantize_model(nn.Sequential(layer), [torch.randn(4, codes.shape[1])], 8, 8, 100.0, fixed_codes=fixed)


def test_hand_computed_sizes_of_a_sparse_3bit_linear():
    codes = np.zeros((2, 20), dtype=np.int8)
    codes.flat[[0, 5, 6, 39]] = [3, -1, 2, -3]  # gaps from index 0: 0, 5, 1, 33
    row = storage(_fixed_linear(codes, 3)).layers.iloc[0]
    side = 4 * (1 + 1 + 2)  # one shared weight scale, the input scale, two biases
    assert row["side_bytes"] == side
    assert row["int8_bytes"] == 40 + side
    assert row["dense_bytes"] == 15 + side  # 40 codes * 3 bits = 120 bits
    assert row["bitmask_bytes"] == 2 + 5 + side  # 4 codes * 3 bits -> 2 bytes, 40 mask bits -> 5 bytes
    # k = 3 (gaps up to 7): gap 33 needs fillers at +7, +14, +21, +28, then 5 -> 8 entries
    assert relative_index_entries(codes.ravel(), 3) == 8
    # k = 1: gaps 5 and 33 need 4 and 32 fillers -> 40 entries; k = 2 (up to 3): 1 + 10 fillers -> 15
    assert relative_index_entries(codes.ravel(), 1) == 40 and relative_index_entries(codes.ravel(), 2) == 15
    # k = 6 (gaps up to 63) needs no filler: 4 entries, 12 code bits -> 2 bytes, 24 index bits -> 3 bytes;
    # every other k costs at least 6 bytes (k = 3: 24 + 24 bits -> 3 + 3)
    assert row["relative_k"] == 6 and row["relative_bytes"] == 5 + side
    assert row["encoding"] == "relative" and row["sparse_bytes"] == 5 + side
    assert (row["weights"], row["nonzero"], row["weight_bits"]) == (40, 4, 3)


def test_binary_layer_is_stored_at_one_bit_per_weight():
    codes = np.where(np.arange(3 * 30).reshape(3, 30) % 3 == 0, -1, 1).astype(np.int8)
    report = storage(_fixed_linear(codes, 1))
    side = 4 * (1 + 1 + 3)
    assert report.dense_bytes == 12 + side  # 90 bits -> 12 bytes
    assert report.sparse_bytes == report.dense_bytes and report.layers["encoding"].tolist() == ["dense"]
    assert report.int8_bytes == 90 + side


def test_3bit_100x_sparse_layer_is_well_below_its_8bit_sparse_size():
    rng = np.random.default_rng(0)
    codes = np.zeros((100, 1000), dtype=np.int8)
    codes.flat[rng.choice(codes.size, 1000, replace=False)] = rng.choice([-3, -2, -1, 1, 2, 3], 1000)
    low = storage(_fixed_linear(codes, 3, scale=0.125)).layers.iloc[0]
    same_weights = nn.Sequential(nn.Linear(1000, 100))
    with torch.no_grad():
        same_weights[0].weight.copy_(torch.from_numpy(codes.astype(np.float32)) * 0.125)
    high = storage(quantize_model(same_weights, [torch.randn(4, 1000)], 8, 8, 100.0)).layers.iloc[0]
    assert high["weight_bits"] == 8 and high["nonzero"] == low["nonzero"] == 1000
    assert low["encoding"] == high["encoding"] == "relative"
    assert low["sparse_bytes"] < 0.75 * high["sparse_bytes"]
    assert low["sparse_bytes"] < low["bitmask_bytes"] / 5  # the mask alone is 12,500 bytes


def test_dense_8bit_layer_picks_the_dense_encoding():
    torch.manual_seed(0)
    qmodel = quantize_model(nn.Sequential(nn.Linear(64, 16)), [torch.randn(4, 64)], 8, 8, 100.0)
    report = storage(qmodel)
    row = report.layers.iloc[0]
    assert row["encoding"] == "dense" and row["weight_bits"] == 8
    assert row["side_bytes"] == 4 * (16 + 1 + 16)  # per-channel max-abs scales differ
    assert report.sparse_bytes == report.dense_bytes == report.int8_bytes == 64 * 16 + row["side_bytes"]
