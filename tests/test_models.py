"""The model zoo matches the literature's parameter counts and shapes."""

import pytest
import torch

from cimflow.evaluate import count_macs, count_parameters
from cimflow.models import build_model


def test_lenet5_is_the_caffe_variant():
    model = build_model("lenet5", 1, 10, 28)
    assert count_parameters(model) == (431_080, 431_080)
    # conv1 288,000 + conv2 1,600,000 + fc1 400,000 + fc2 5,000
    assert count_macs(model, (1, 28, 28)) == 2_293_000
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_resnet20_has_about_027m_parameters():
    model = build_model("resnet20", 3, 10, 32)
    total, _ = count_parameters(model)
    assert 265_000 < total < 275_000
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())


def test_unknown_model_and_too_small_input_are_rejected():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", 3, 10, 32)
    with pytest.raises(ValueError, match="input_size >= 16"):
        build_model("lenet5", 1, 10, 8)
