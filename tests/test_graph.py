"""BN folding and fused-ReLU detection from the model's graph (torch.fx), not from names."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimflow.graph import FoldError, relu_follows
from cimflow.models import build_model
from cimflow.quantize import fold_batchnorm


def _randomise(bn: nn.BatchNorm2d | nn.BatchNorm1d, gain_sign: float = 1.0) -> None:
    with torch.no_grad():
        n = bn.num_features
        bn.weight.copy_(gain_sign * (0.5 + torch.rand(n)))  # gamma != 1
        bn.weight[0] = -1.7  # one negative gain in every case
        bn.bias.copy_(torch.randn(n))
        bn.running_mean.copy_(torch.randn(n))
        bn.running_var.copy_(0.2 + torch.rand(n))


class Named(nn.Module):
    """Conv -> BN under names that follow no convention, plus a Linear -> BatchNorm1d."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.BatchNorm2d(6)
        self.head = nn.Linear(6 * 8 * 8, 5, bias=False)
        self.head_norm = nn.BatchNorm1d(5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.features(x)))
        return self.head_norm(self.head(torch.flatten(x, 1)))


@pytest.mark.parametrize("gain_sign", [1.0, -1.0])
def test_folding_is_exact_for_any_gain_and_follows_the_graph_not_names(gain_sign):
    torch.manual_seed(0)
    model = Named().eval()
    _randomise(model.norm, gain_sign)
    _randomise(model.head_norm, gain_sign)
    x = torch.randn(4, 3, 8, 8)
    expected = model(x)
    folded = fold_batchnorm(model)
    assert isinstance(folded.norm, nn.Identity) and isinstance(folded.head_norm, nn.Identity)
    torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)
    assert relu_follows(folded) == {"features"}  # a functional ReLU after the folded BN counts


class ReluThenBn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.ReLU()
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.act(self.conv(x)))


class PoolThenBn(nn.Module):
    """A negative BN gain after max-pooling: folding it into the conv would reorder max."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(self.conv(x)))


class SharedOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


@pytest.mark.parametrize(("model", "message"), [
    (ReluThenBn(), "cannot fold bn: it consumes act, not a Conv2d"),
    (PoolThenBn(), "cannot fold bn: it consumes pool, not a Conv2d"),
    (SharedOutput(), "cannot fold bn into conv: conv's output also feeds add"),
])
def test_a_batchnorm_that_cannot_fold_exactly_is_refused_with_its_layers(model, message):
    _randomise(model.bn, -1.0)
    with pytest.raises(FoldError, match=message):
        fold_batchnorm(model.eval())


def test_residual_blocks_fuse_only_the_relu_that_directly_follows():
    """ResNet-20: each block's first conv feeds its ReLU (after BN); the second meets the
    residual addition first, so its ReLU stays digital; the classifier has none."""
    folded = fold_batchnorm(build_model("resnet20", 3, 10, 32).eval())
    assert relu_follows(folded) == {"conv1"} | {f"layers.{i}.conv1" for i in range(9)}
    assert relu_follows(fold_batchnorm(build_model("lenet5", 1, 10, 28).eval())) == {"fc1"}


def test_a_layer_feeding_two_consumers_is_not_fused():
    class Fork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x)
            return torch.relu(y) + y

    assert relu_follows(Fork()) == set()
