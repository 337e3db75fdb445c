"""The int8 model on the simulated macro: exact in ideal mode, fused ReLU with analog bias."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from cimflow.cim.config import MacroConfig
from cimflow.cim.simulator import CimMacro
from cimflow.data.digits import load_digits
from cimflow.hardware import attach_cim, bias_rows, full_scales, total_counters
from cimflow.models import build_model
from cimflow.preprocess import Preprocessor
from cimflow.quantize import quantize_model, quantized_layers
from cimflow.train import seed_everything, train
from conftest import ROOT
from test_train import _params

IDEAL = {"cap_mismatch_sigma": 0.0, "parasitic_attenuation": 0.0, "charge_sharing_nonlinearity": 0.0,
         "noise_lsb_rms": 0.0, "adc_offset_lsb_sigma": 0.0, "adc_gain_error_sigma": 0.0, "adc_inl_lsb": 0.0,
         "sign_offset_lsb_sigma": 0.0, "adc_bits": 16}
LSB_ONE = 2.0**15  # full scale at which a 16-bit ADC's LSB is one integer-product unit


def _macro(**overrides) -> MacroConfig:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["cim"]["macro"]
    return MacroConfig.from_mapping(raw | IDEAL | overrides)


@pytest.fixture(scope="module")
def trained_lenet():
    train_split, test_split = load_digits(0.25, 0)
    torch.set_num_threads(1)
    seed_everything(0)
    model = build_model("lenet5", 1, 10, 28)
    prep = Preprocessor.fit(train_split.images, 28)
    train(model, train_split.images, train_split.labels, test_split.images, test_split.labels, prep,
          _params(epochs=2), seed=0, device=torch.device("cpu"))
    x = prep(test_split.images[:16])
    return quantize_model(model.eval(), [prep(train_split.images[:256])], 8, 8, 99.99), x


def test_ideal_chip_is_bit_exact_on_trained_lenet5(trained_lenet):
    """rows=2 keeps every partial sum below 2**15, so a 16-bit ideal ADC loses nothing."""
    qmodel, x = trained_lenet
    expected = qmodel(x)
    macro = CimMacro(_macro(rows=2), chip_seed=0)
    plans = attach_cim(qmodel, macro, {n: LSB_ONE for n, _ in quantized_layers(qmodel)}, {"fc1"}, False, 0)
    assert torch.equal(qmodel(x), expected)
    assert not any(p.fused for p in plans.values())  # K > rows everywhere: digital ReLU
    assert total_counters(plans)["conversions_sign_only"] == 0


def _small_relu_net(kind: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(3)
    if kind == "linear":
        net, x = nn.Sequential(nn.Linear(24, 12), nn.ReLU()), torch.randn(64, 24)
    else:
        net, x = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU()), torch.randn(4, 3, 9, 9)
    with torch.no_grad():
        net[0].bias.uniform_(-0.5, 0.5)
    return quantize_model(net.eval(), [x], 4, 4, 100.0), x


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_fused_relu_with_analog_bias_equals_digital_in_ideal_mode(kind):
    qmodel, x = _small_relu_net(kind)
    expected = qmodel(x)
    plans = attach_cim(qmodel, CimMacro(_macro(), 0), {"0": LSB_ONE}, {"0"}, False, 0)
    out = qmodel(x)
    assert plans["0"].fused and plans["0"].bias_inputs is not None
    # The bias enters the analog sum as round(b / (s_x s_w)) integer units: exact up to that rounding.
    unit = qmodel[0].output_scale().max().item()
    torch.testing.assert_close(out, expected, rtol=0, atol=unit * 0.5 + 1e-6)
    counts = total_counters(plans)
    assert counts["conversions_sign_only"] > 0  # negative pre-activations stopped after the sign


def test_bias_rows_reconstruct_the_integer_bias():
    lin = nn.Linear(10, 5)
    with torch.no_grad():
        lin.bias.copy_(torch.tensor([3.0, -2.5, 0.0, 40.0, -0.01]))
    q = quantize_model(nn.Sequential(lin), [torch.randn(32, 10)], 8, 8, 100.0)[0]
    inputs, weights = bias_rows(q)
    unit = (q.input_scale.double() * q.weight_scale.double())
    expected = torch.round(q.bias.double() / unit)
    got = torch.from_numpy(inputs.astype("int64") @ weights.astype("int64")).double()
    assert torch.equal(got, expected)
    assert abs(weights.astype(int)).max() <= 127


def test_full_scale_tracks_partial_sums(trained_lenet):
    qmodel, x = trained_lenet
    scales = full_scales(qmodel, [x], rows=128, percentile=100.0)
    assert set(scales) == {"conv1", "conv2", "fc1", "fc2"}
    assert all(v >= 1.0 for v in scales.values())
    wider = full_scales(qmodel, [x], rows=256, percentile=100.0)
    assert wider["fc1"] >= scales["fc1"]  # longer segments hold larger sums
