"""What the dataflow graph of a model says about folding and fusing (torch.fx).

Layer names carry no meaning here: BatchNorm folds into a convolution only when the
graph shows it consumes that convolution's output and nothing else does, and the CiM
mapping fuses a ReLU into a layer only when the graph shows the layer's output goes
straight into it. Anything else (a BN after a ReLU or a pooling, a convolution whose
output also feeds a residual branch) is refused or kept digital, never folded wrong.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from cimflow.errors import CimflowError

FOLDABLE = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm1d: nn.Linear}
"""BatchNorm kind -> the layer kind it folds into exactly (per output channel)."""

_RELU_FUNCTIONS = {F.relu, torch.relu}
_PASS_THROUGH = (nn.Identity, nn.Dropout)  # eval-mode identities between a layer and its ReLU


class FoldError(CimflowError):
    """A model whose BatchNorms cannot be folded exactly; the message names the layers."""


def trace(model: nn.Module) -> fx.Graph:
    """The model's graph with every torch.nn module as one node."""
    try:
        return fx.Tracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - fx raises many types; name the model, keep the cause
        raise FoldError(f"{type(model).__name__} cannot be traced by torch.fx ({exc})") from exc


def _label(node: fx.Node) -> str:
    """A module node by its qualified name, anything else by its graph name (e.g. ``add``)."""
    return str(node.target) if node.op == "call_module" else node.name


def _module(model: nn.Module, node: fx.Node) -> nn.Module | None:
    return model.get_submodule(node.target) if node.op == "call_module" else None


def batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, batchnorm) name pairs to fold, or FoldError naming a BN that cannot be."""
    pairs = []
    for node in trace(model).nodes:
        bn = _module(model, node)
        if type(bn) not in FOLDABLE:
            continue
        source = node.args[0] if node.args else None
        layer = _module(model, source) if isinstance(source, fx.Node) else None
        wanted = FOLDABLE[type(bn)]
        if not isinstance(layer, wanted):
            producer = _label(source) if isinstance(source, fx.Node) else "the model input"
            raise FoldError(f"cannot fold {node.target}: it consumes {producer}, not a {wanted.__name__} "
                            f"(only a BatchNorm directly after a {wanted.__name__} folds exactly)")
        if len(source.users) != 1:
            others = sorted(_label(u) for u in source.users if u is not node)
            raise FoldError(f"cannot fold {node.target} into {source.target}: {source.target}'s output also "
                            f"feeds {', '.join(others)}, which would see the folded values")
        pairs.append((str(source.target), str(node.target)))
    return pairs


def _is_relu(model: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(_module(model, node), nn.ReLU)
    return node.op == "call_function" and node.target in _RELU_FUNCTIONS


def _through_identities(model: nn.Module, node: fx.Node) -> fx.Node | None:
    """The single consumer of ``node`` after eval-mode identities (folded BNs included)."""
    while len(node.users) == 1:
        (user,) = node.users
        if not isinstance(_module(model, user), _PASS_THROUGH):
            return user
        node = user
    return None


def relu_follows(model: nn.Module) -> set[str]:
    """Conv/linear layers whose output goes straight into a ReLU and nowhere else.

    Call it on the BN-folded model (folded BNs are identities). A layer whose output
    meets a residual addition first, or feeds two consumers, is not listed: its ReLU
    cannot run inside that layer's conversion."""
    fused = set()
    for node in trace(model).nodes:
        if isinstance(_module(model, node), (nn.Conv2d, nn.Linear)):
            consumer = _through_identities(model, node)
            if consumer is not None and _is_relu(model, consumer):
                fused.add(str(node.target))
    return fused

