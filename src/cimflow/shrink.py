"""Which layers' output channels can be removed, and removing them for real.

A layer's channels are prunable when its output reaches exactly one conv/linear consumer
through per-channel operations only (its BatchNorm, ReLU, pooling, dropout, flatten): then
a zero channel contributes nothing downstream, and deleting the channel from the layer, its
BatchNorm and the consumer's inputs gives the same network, smaller. An output that meets
a residual addition or feeds two consumers is not prunable (its channels are shared), nor
is the network's output layer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

from cimflow.graph import FOLDABLE, trace

PER_CHANNEL = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Dropout,
               nn.Identity, nn.Flatten)
"""Modules that map each channel on its own, and zero to zero, so a removed channel stays removed."""


class ShrinkError(ValueError):
    """A pruning plan that does not fit the network; the message names the layer."""


@dataclass(frozen=True)
class ChannelChain:
    """A prunable layer: its output channels, the BatchNorm sliced with them, their one consumer."""

    layer: str
    norm: str | None
    consumer: str
    channels: int
    mask_point: str
    """The module whose output the masks multiply (the BatchNorm if there is one)."""
    passes: tuple[str, ...] = ()
    """The per-channel modules between it (or its BatchNorm) and the consumer, in order."""


def _module(model: nn.Module, node: fx.Node) -> nn.Module | None:
    return model.get_submodule(str(node.target)) if node.op == "call_module" else None


def channel_chains(model: nn.Module) -> list[ChannelChain]:
    """Every prunable layer of ``model``, in graph order."""
    chains = []
    for node in trace(model).nodes:
        layer = _module(model, node)
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        channels = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        current, norm, passes = node, None, []
        while len(current.users) == 1:
            (user,) = current.users
            module = _module(model, user)
            directly_after = norm is None and current is node
            if directly_after and type(module) in FOLDABLE and isinstance(layer, FOLDABLE[type(module)]):
                norm = user
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                if isinstance(module, nn.Conv2d) and module.groups != 1:
                    break
                chains.append(ChannelChain(str(node.target), None if norm is None else str(norm.target),
                                           str(user.target), channels, str((norm or node).target), tuple(passes)))
                break
            elif not isinstance(module, PER_CHANNEL):
                break
            else:
                passes.append(str(user.target))
            current = user
    return chains


def _rows(tensor: Tensor, keep: Tensor) -> nn.Parameter:
    return nn.Parameter(tensor.detach()[keep].clone())


def shrink(model: nn.Module, keep: dict[str, Tensor]) -> nn.Module:
    """A copy of ``model`` without the channels ``keep`` (layer name -> bool mask) drops.

    The result equals ``model`` with those channels zeroed at their mask point."""
    chains = {chain.layer: chain for chain in channel_chains(model)}
    unknown = sorted(set(keep) - set(chains))
    if unknown:
        raise ShrinkError(f"not prunable (output shared, residual or network output): {', '.join(unknown)}")
    small = copy.deepcopy(model)
    for name, mask in keep.items():
        chain = chains[name]
        mask = mask.to(torch.bool)
        if mask.shape != (chain.channels,) or not mask.any():
            raise ShrinkError(f"{name}: keep mask needs {chain.channels} entries with at least one kept, "
                              f"got shape {tuple(mask.shape)} with {int(mask.sum())} kept")
        _drop_outputs(small.get_submodule(name), mask)
        if chain.norm is not None:
            _drop_norm(small.get_submodule(chain.norm), mask)
        _drop_inputs(small.get_submodule(chain.consumer), mask, name)
    return small


def _drop_outputs(layer: nn.Module, mask: Tensor) -> None:
    layer.weight = _rows(layer.weight, mask)
    if layer.bias is not None:
        layer.bias = _rows(layer.bias, mask)
    if isinstance(layer, nn.Conv2d):
        layer.out_channels = int(mask.sum())
    else:
        layer.out_features = int(mask.sum())


def _drop_norm(norm: nn.Module, mask: Tensor) -> None:
    if norm.affine:
        norm.weight, norm.bias = _rows(norm.weight, mask), _rows(norm.bias, mask)
    if norm.track_running_stats:
        norm.running_mean = norm.running_mean[mask].clone()
        norm.running_var = norm.running_var[mask].clone()
    norm.num_features = int(mask.sum())


def _drop_inputs(consumer: nn.Module, mask: Tensor, producer: str) -> None:
    if isinstance(consumer, nn.Conv2d):
        consumer.weight = nn.Parameter(consumer.weight.detach()[:, mask].clone())
        consumer.in_channels = int(mask.sum())
        return
    columns = _input_columns(consumer.in_features, mask, producer)
    consumer.weight = nn.Parameter(consumer.weight.detach()[:, columns].clone())
    consumer.in_features = int(columns.sum())


def _input_columns(inputs: int, mask: Tensor, producer: str) -> Tensor:
    """A linear consumer's input columns of the kept channels (flatten keeps each channel's features together)."""
    per_channel, remainder = divmod(inputs, mask.numel())
    if remainder:
        raise ShrinkError(f"{producer}: its {mask.numel()} channels do not divide the consumer's {inputs} inputs")
    return mask.repeat_interleave(per_channel)


def shrink_quantized(qmodel: nn.Module, chains: list[ChannelChain], keep: dict[str, Tensor]) -> nn.Module:
    """:func:`shrink` for an int8 model (cimflow.quantize): each kept layer's codes, scales
    and bias lose the dropped output channels and its consumer's codes the matching inputs.
    ``chains`` come from the float network the int8 model was exported from (BatchNorm
    already folded, so none is left to slice); the integer arithmetic of what remains is
    unchanged, so the result equals ``qmodel`` with those channels zeroed."""
    by_layer = {chain.layer: chain for chain in chains}
    unknown = sorted(set(keep) - set(by_layer))
    if unknown:
        raise ShrinkError(f"not prunable (output shared, residual or network output): {', '.join(unknown)}")
    small = copy.deepcopy(qmodel)
    for name, mask in keep.items():
        mask = mask.to(torch.bool)
        layer, consumer = small.get_submodule(name), small.get_submodule(by_layer[name].consumer)
        if mask.shape != (layer.weight_q.shape[0],) or not mask.any():
            raise ShrinkError(f"{name}: keep mask needs {layer.weight_q.shape[0]} entries with at least one kept, "
                              f"got shape {tuple(mask.shape)} with {int(mask.sum())} kept")
        for buffer in ("weight_q", "weight_scale", "bias"):
            setattr(layer, buffer, getattr(layer, buffer)[mask].clone())
        columns = mask if consumer.kind == "conv" else _input_columns(consumer.weight_q.shape[1], mask, name)
        consumer.weight_q = consumer.weight_q[:, columns].clone()
    return small
