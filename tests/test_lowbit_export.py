"""Exact export of ADMM codes: the int8 model holds the method's codes and levels, BN folded or not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cimflow.artifacts import ArtifactError, save_tensors
from cimflow.compress.admm.projections import dequantize, prune_mask, quantize
from cimflow.modelio import ModelSpec
from cimflow.models import BUILTIN, build_model
from cimflow.preprocess import Preprocessor
from cimflow.quantize import (
    CODES_FORMAT,
    LayerCodes,
    fold_batchnorm,
    load_codes,
    load_int8,
    quantize_model,
    quantized_layers,
    save_codes,
    save_int8,
)

LENET_PLAN = {"conv1": (1, 0.0), "conv2": (3, 0.5), "fc1": (3, 0.9)}
"""Layer -> (bits, pruned share); fc2 stays on the plain 8-bit export. Binary layers are not pruned."""


@torch.no_grad()
def _put_on_levels(model: nn.Module, plan: dict[str, tuple[int, float]]) -> dict[str, LayerCodes]:
    """Prune and snap each planned layer to its ADMM levels, as admm_quantize leaves it."""
    fixed = {}
    for name, (bits, ratio) in plan.items():
        layer = model.get_submodule(name)
        allowed = prune_mask(layer.weight, ratio, "unstructured", torch.ones_like(layer.weight, dtype=torch.bool))
        codes, scale = quantize(layer.weight, bits, allowed)
        layer.weight.copy_(dequantize(codes, scale))
        fixed[name] = LayerCodes(codes.numpy(), scale, bits)
    return fixed


def _lenet() -> tuple[nn.Module, dict[str, LayerCodes]]:
    torch.manual_seed(0)
    model = build_model("lenet5", 1, 10, 28).eval()
    return model, _put_on_levels(model, LENET_PLAN)


def _per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view((-1,) + (1,) * (like.ndim - 1))


def test_lenet_export_keeps_admm_codes_and_levels_exactly(tmp_path):
    model, fixed = _lenet()
    qmodel = quantize_model(model, [torch.randn(8, 1, 28, 28)], 8, 8, 100.0, fixed_codes=fixed)
    layers = dict(quantized_layers(qmodel))
    for name, codes in fixed.items():
        q = layers[name]
        assert torch.equal(q.weight_q, torch.from_numpy(codes.codes))
        # the same float32 product projections.dequantize forms: bit for bit the ADMM levels
        weights = q.weight_q.float() * _per_channel(q.weight_scale, q.weight_q)
        assert torch.equal(weights, model.get_submodule(name).weight)
        assert torch.all(q.weight_scale == codes.scale) and q.weight_bits == codes.bits
    assert layers["fc2"].weight_bits == 8 and layers["fc2"].weight_q.abs().max() == 127
    assert int((layers["fc1"].weight_q == 0).sum()) == round(0.9 * 500 * 800)

    spec = ModelSpec(BUILTIN["lenet5"], 1, 10, Preprocessor(28, (0.5,), (0.25,)), tuple("0123456789"))
    save_int8(tmp_path / "int8.safetensors", qmodel, spec)
    loaded = dict(quantized_layers(load_int8(tmp_path / "int8.safetensors")[0]))
    for name, q in layers.items():
        assert loaded[name].weight_bits == q.weight_bits
        assert torch.equal(loaded[name].weight_q, q.weight_q)
        assert torch.equal(loaded[name].weight_scale, q.weight_scale)


def _resnet_with_signed_gains() -> nn.Module:
    torch.manual_seed(1)
    model = build_model("resnet20", 3, 10, 32).train()
    with torch.no_grad():
        model(torch.randn(16, 3, 32, 32))  # BN running statistics
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.3, 2.0)
            bn.weight[::3] *= -1  # a negative gamma in every BN
            bn.bias.uniform_(-0.5, 0.5)
    return model.eval()


def _bn_gains(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each convK's BN gain gamma / sqrt(var + eps), computed as fold_batchnorm does (float32)."""
    return {name.replace("bn", "conv"): (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
            for name, bn in model.named_modules() if isinstance(bn, nn.BatchNorm2d)}


def test_folded_export_with_fixed_codes_is_exact_per_channel():
    model = _resnet_with_signed_gains()
    fixed = _put_on_levels(model, {n: (3, 0.5) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)})
    qmodel = quantize_model(model, [torch.randn(4, 3, 32, 32)], 8, 8, 100.0, fixed_codes=fixed)
    gains = _bn_gains(model)
    folded = fold_batchnorm(model)
    tolerance = 2 * torch.finfo(torch.float32).eps  # two float32 roundings: the fold and the scale
    for name, q in quantized_layers(qmodel):
        if name not in fixed:
            continue
        sign = torch.where(gains[name] < 0, -1, 1).to(torch.int8)
        # positive scales; a negative gain's channel carries the codes with their sign flipped
        assert torch.equal(q.weight_q, torch.from_numpy(fixed[name].codes) * _per_channel(sign, q.weight_q))
        assert torch.all(q.weight_scale > 0) and q.weight_bits == 3
        ideal = fixed[name].scale * gains[name].abs()
        assert torch.all((q.weight_scale.double() - ideal).abs() <= tolerance * ideal)
        w = folded.get_submodule(name).weight.double()
        recon = q.weight_q.double() * _per_channel(q.weight_scale.double(), w)
        error = (w - recon).abs().flatten(1).amax(1)
        assert torch.all(error <= tolerance * w.abs().flatten(1).amax(1))
        assert torch.equal(recon == 0, w == 0)


def test_weights_off_their_grid_raise_naming_the_layer():
    model, fixed = _lenet()
    with torch.no_grad():
        w = model.conv2.weight
        w[7, 3, 2, 1] += 1e-3 * fixed["conv2"].scale
    with pytest.raises(ArtifactError, match="layer conv2: .*disagree"):
        quantize_model(model, [torch.randn(2, 1, 28, 28)], 8, 8, 100.0, fixed_codes=fixed)


def test_codes_for_an_unknown_or_misshapen_layer_raise():
    model, fixed = _lenet()
    with pytest.raises(ArtifactError, match="fc9"):
        quantize_model(model, [torch.randn(2, 1, 28, 28)], 8, 8, 100.0, fixed_codes={"fc9": fixed["fc1"]})
    with pytest.raises(ArtifactError, match="layer fc2: codes have shape"):
        quantize_model(model, [torch.randn(2, 1, 28, 28)], 8, 8, 100.0, fixed_codes={"fc2": fixed["fc1"]})


def test_codes_file_round_trips(tmp_path):
    _, fixed = _lenet()
    path = tmp_path / "quantized.safetensors"
    save_codes(path, {n: c.codes for n, c in fixed.items()}, {n: c.scale for n, c in fixed.items()},
               {n: c.bits for n, c in fixed.items()})
    loaded = load_codes(path)
    assert loaded.keys() == fixed.keys()
    for name, codes in fixed.items():
        assert np.array_equal(loaded[name].codes, codes.codes) and loaded[name].codes.dtype == np.int8
        assert loaded[name].scale == codes.scale and loaded[name].bits == codes.bits


def _write(path, codes: np.ndarray, bits: int, scale: np.ndarray | None = None, fmt: str = CODES_FORMAT) -> None:
    tensors = {"fc1.codes": codes, "fc1.scale": np.array([0.25], dtype=np.float32) if scale is None else scale}
    save_tensors(path, tensors, {"format": fmt, "bits": f'{{"fc1": {bits}}}'})


@pytest.mark.parametrize(("codes", "bits", "match"), [
    (np.array([[0, 3, -4]], dtype=np.int8), 3, "code -4 is not within"),
    (np.array([[1, 0, -1]], dtype=np.int8), 1, "code 0 is not -1 or \\+1"),
    (np.array([[1, 2, -1]], dtype=np.int16), 3, "codes are int16, not int8"),
    (np.array([[1, 2, -1]], dtype=np.int8), 9, "bits=9"),
])
def test_codes_out_of_range_raise_naming_file_and_layer(tmp_path, codes, bits, match):
    path = tmp_path / "bad.safetensors"
    _write(path, codes, bits)
    with pytest.raises(ArtifactError, match=f"bad.safetensors: layer fc1: {match}"):
        load_codes(path)


def test_malformed_codes_files_raise(tmp_path):
    path = tmp_path / "bad.safetensors"
    ok = np.array([[1, -1]], dtype=np.int8)
    _write(path, ok, 3, fmt="cimflow-quantized-v1")
    with pytest.raises(ArtifactError, match="bad.safetensors: not a cimflow codes file"):
        load_codes(path)
    save_tensors(path, {"fc1.codes": ok}, {"format": CODES_FORMAT, "bits": '{"fc1": 3}'})
    with pytest.raises(ArtifactError, match="layer fc1: tensor fc1.scale missing"):
        load_codes(path)
    _write(path, ok, 3, scale=np.array([-0.5], dtype=np.float32))
    with pytest.raises(ArtifactError, match="layer fc1: scale -0.5"):
        load_codes(path)


def test_int8_file_with_codes_wider_than_its_bits_is_rejected(tmp_path):
    model, fixed = _lenet()
    qmodel = quantize_model(model, [torch.randn(2, 1, 28, 28)], 8, 8, 100.0, fixed_codes=fixed)
    qmodel.fc1.weight_q[0, 0] = 5  # beyond 3 bits
    spec = ModelSpec(BUILTIN["lenet5"], 1, 10, Preprocessor(28, (0.5,), (0.25,)), tuple("0123456789"))
    save_int8(tmp_path / "int8.safetensors", qmodel, spec)
    with pytest.raises(ArtifactError, match="int8.safetensors: layer fc1: code 5"):
        load_int8(tmp_path / "int8.safetensors")
