"""Model zoo: the networks the pruning and CiM literature evaluate on, named in
params.yaml by reference like any user's own (see cimflow.modelref)."""

from torch import nn

from cimflow.modelref import ModelRef
from cimflow.models.edsr import EDSRBaseline
from cimflow.models.espcn import ESPCN
from cimflow.models.lenet5 import LeNet5
from cimflow.models.resnet20 import ResNet20

BUILTIN = {
    "lenet5": ModelRef("LeNet5", module="cimflow.models.lenet5"),
    "resnet20": ModelRef("ResNet20", module="cimflow.models.resnet20"),
    "espcn": ModelRef("ESPCN", module="cimflow.models.espcn"),
    "edsr_baseline": ModelRef("EDSRBaseline", module="cimflow.models.edsr"),
}
"""The networks that ship with cimflow, as the references params.yaml names them by."""


def build_model(name: str, in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    """A built-in network by short name (tests and benchmarks)."""
    return BUILTIN[name].build(in_channels, num_classes, input_size)


__all__ = ["BUILTIN", "EDSRBaseline", "ESPCN", "LeNet5", "ResNet20", "build_model"]
