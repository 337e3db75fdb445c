"""Model zoo: the networks the pruning and CiM literature evaluate on."""

from torch import nn

from cimflow.models.lenet5 import LeNet5
from cimflow.models.resnet20 import ResNet20


def build_model(name: str, in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    """Construct a model by its params.yaml name."""
    if name == "lenet5":
        return LeNet5(in_channels, num_classes, input_size)
    if name == "resnet20":
        return ResNet20(in_channels, num_classes)
    raise ValueError(f"unknown model {name!r} (known: lenet5, resnet20)")


__all__ = ["LeNet5", "ResNet20", "build_model"]
