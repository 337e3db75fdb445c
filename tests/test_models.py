"""The model zoo matches the literature's parameter counts and shapes."""

import pytest
import torch

from cimflow.evaluate import count_macs, count_parameters
from cimflow.modelref import ModelError, ModelRef
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


def test_unknown_class_and_too_small_input_are_rejected():
    with pytest.raises(ModelError, match="cimflow.models.lenet5 has no torch.nn.Module class 'VGG'"):
        ModelRef("VGG", module="cimflow.models.lenet5").build(3, 10, 32)
    with pytest.raises(ModelError, match="input_size >= 16"):
        build_model("lenet5", 1, 10, 8)
    with pytest.raises(ModelError, match="cannot import model module 'cimflow.models.nope'"):
        ModelRef("Net", module="cimflow.models.nope").build(1, 10, 28)


USER_MODEL = """
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_channels, num_classes, width=8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))
"""


def test_a_model_from_the_users_file_gets_task_keywords_and_its_own_args(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(USER_MODEL)
    ref = ModelRef("TinyNet", file=str(path), args={"width": 5})
    model = ref.build(in_channels=2, num_classes=3, input_size=28)  # input_size: not a TinyNet argument
    assert model.conv.out_channels == 5 and model(torch.zeros(1, 2, 9, 9)).shape == (1, 3)
    assert ModelRef.from_json(ref.to_json()) == ref
    with pytest.raises(ModelError, match="are set from the task's data"):
        ModelRef("TinyNet", file=str(path), args={"num_classes": 4}).build(2, 3, 28)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ModelError, match="broken.py failed to import .RuntimeError: boom"):
        ModelRef("Net", file=str(broken)).build(1, 10, 28)
