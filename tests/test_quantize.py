"""Int8 export: integer codes, BN folding, exact integer arithmetic, file round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cimflow.modelio import ModelSpec
from cimflow.models import BUILTIN, build_model
from cimflow.preprocess import Preprocessor
from cimflow.quantize import exact_engine, fold_batchnorm, load_int8, quantize_model, quantized_layers, save_int8


def _resnet_with_stats() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet20", 3, 10, 32)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32))  # populate BN running statistics
    return model.eval()


def test_batchnorm_folding_preserves_outputs():
    model = _resnet_with_stats()
    x = torch.randn(4, 3, 32, 32)
    expected = model(x)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)


def test_weight_codes_and_scales_are_per_channel_symmetric():
    model = _resnet_with_stats()
    qmodel = quantize_model(model, [torch.randn(32, 3, 32, 32)], 8, 8, 99.99)
    layers = quantized_layers(qmodel)
    assert len(layers) == 20  # 19 convolutions + the classifier
    for _, q in layers:
        codes = q.weight_q.to(torch.int32)
        assert q.weight_q.dtype == torch.int8
        assert codes.abs().max() <= 127
        per_channel_max = codes.abs().flatten(1).amax(1)
        assert torch.all(per_channel_max == 127)  # every channel uses its full range


def test_exact_engine_matches_integer_arithmetic():
    lin = nn.Linear(300, 7)
    q = quantize_model(nn.Sequential(lin), [torch.randn(64, 300)], 8, 8, 100.0)[0]
    x_codes = torch.randint(-127, 128, (5, 300)).to(torch.float64)
    expected = x_codes.long() @ q.weight_q.long().T
    assert torch.equal(exact_engine(q, x_codes), expected.to(torch.float64))


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_exact_engine_stays_exact_past_float32s_integer_range(kind):
    """Sums near 127 * 127 * K > 2**24: the float32 chunks keep every partial sum exact."""
    torch.manual_seed(0)
    layer = nn.Conv2d(128, 4, 3, padding=1) if kind == "conv" else nn.Linear(2000, 4)
    shape = (2, 128, 5, 5) if kind == "conv" else (3, 2000)
    q = quantize_model(nn.Sequential(layer), [torch.randn(shape)], 8, 8, 100.0)[0]
    with torch.no_grad():
        q.weight_q.copy_(torch.randint(126, 128, q.weight_q.shape, dtype=torch.int8))
    x_codes = torch.randint(126, 128, shape).to(torch.float64)
    if kind == "conv":
        expected = torch.nn.functional.conv2d(x_codes, q.weight_q.double(), None, 1, 1)  # float64: exact here
    else:
        expected = (x_codes.long() @ q.weight_q.long().T).double()
    assert float(expected.abs().max()) > 2**24
    assert torch.equal(exact_engine(q, x_codes), expected)


def test_int8_model_tracks_float_and_round_trips(tmp_path):
    model = _resnet_with_stats()
    calib = [torch.randn(64, 3, 32, 32)]
    qmodel = quantize_model(model, calib, 8, 8, 100.0)
    x = calib[0][:8]
    ref, out = model(x), qmodel(x)
    assert torch.corrcoef(torch.stack([ref.flatten(), out.flatten()]))[0, 1] > 0.99
    spec = ModelSpec(BUILTIN["resnet20"], 3, 10, Preprocessor(32, (0.5,) * 3, (0.25,) * 3), tuple("abcdefghij"))
    save_int8(tmp_path / "int8.safetensors", qmodel, spec)
    loaded, loaded_spec = load_int8(tmp_path / "int8.safetensors")
    assert loaded_spec == spec
    assert torch.equal(loaded(x), out)


def test_lower_bit_export_uses_the_smaller_grid():
    model = build_model("lenet5", 1, 10, 28).eval()
    qmodel = quantize_model(model, [torch.randn(16, 1, 28, 28)], 4, 6, 100.0)
    for _, q in quantized_layers(qmodel):
        assert q.weight_q.abs().max() <= 7 and q.act_qmax == 31


def test_compiled_requantization_matches_the_float64_tensor_ops():
    """The one-pass kernels keep the arithmetic of the float64 tensor ops bit for bit."""
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    q = quantize_model(nn.Sequential(conv), [torch.randn(8, 4, 9, 9)], 8, 8, 99.0)[0]
    x = torch.randn(8, 4, 9, 9) * 3
    x[0, 0, 0, :3] = torch.tensor([float("nan"), 1e30, -1e30])
    reference = x.double().div(q.input_scale.double()).round().clamp(-127, 127)
    codes = q.quantize_input(x)
    assert codes.dtype == torch.float32
    assert torch.equal(codes.nan_to_num(7), reference.float().nan_to_num(7))
    acc = exact_engine(q, codes[1:])
    expected = (acc.double() * q.output_scale() + q.bias.double().view(1, -1, 1, 1)).float()
    assert torch.equal(q.dequantize(acc.clone()), expected)
    assert torch.equal(q.dequantize(acc.double()), expected)
    rows = acc.double().permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    assert torch.equal(q.dequantize_rows(rows, (7, 9, 9, 6), with_bias=True), expected)
