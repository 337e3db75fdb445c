"""What a CiM chip spends outside the macro's own MAC-and-convert: the peripheral work.

The macro's energy (:mod:`cimflow.cim.energy`) covers the array, input drivers, ADC and
per-conversion digital logic. A network also needs, per inference:

* requantization of every conv/linear output to the next layer's int8 (one multiply,
  shift and clamp per output element);
* pooling (one compare or add per input element) and residual additions (one add per
  output element), which run in digital logic beside the macro;
* activation buffer traffic: every int8 activation an operator reads or writes crosses
  the on-chip buffer once (perfect line-buffer reuse of convolution windows);
* weight reloads: when the model's weights exceed the macro's capacity, every weight
  byte is written again once per ``weight_reuse_inferences`` inferences (a batch run
  layer by layer); when they fit, they are written once and cost nothing per inference.

The counts come from the model's torch.fx graph with shapes propagated on one input, so
they are data-independent and exact for the network as traced. The energy constants are
assumptions (``cim.system`` in params.yaml); each component is reported on its own,
never folded into the macro's TOPS/W.
"""

from __future__ import annotations

import operator

import pandas as pd
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from cimflow.graph import trace
from cimflow.params.cim import SystemParams

_POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_POOL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
COMPONENTS = ("requantize", "pool", "residual_add", "buffer", "weight_reload")


def _kind(model: nn.Module, node: fx.Node) -> str | None:
    if node.op == "call_module":
        module = model.get_submodule(node.target)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return "layer"
        if isinstance(module, _POOL_MODULES):
            return "pool"
        return None
    if node.op == "call_function" and node.target in _POOL_FUNCTIONS:
        return "pool"
    if node.op == "call_function" and node.target in _ADD_FUNCTIONS:
        if sum(isinstance(a, fx.Node) for a in node.args) == 2:
            return "residual_add"
    if node.op == "call_method" and node.target in ("add", "add_") and isinstance(node.args[1], fx.Node):
        return "residual_add"
    return None


def _elements(node: fx.Node) -> int:
    meta = node.meta.get("tensor_meta")
    return int(torch.Size(meta.shape).numel()) if meta is not None else 0


def graph_work(model: nn.Module, input_shape: tuple[int, ...]) -> pd.DataFrame:
    """Per operator of one inference: kind, elements read and written, weight bytes.

    ``model``: the BN-folded float network (the graph the int8 model runs).
    ``input_shape``: one input, batch dimension included (1, C, H, W).
    """
    graph = trace(model)
    module = fx.GraphModule(model, graph)
    with torch.no_grad():
        ShapeProp(module).propagate(torch.zeros(input_shape))
    rows = []
    for node in module.graph.nodes:
        kind = _kind(model, node)
        if kind is None:
            continue
        read = sum(_elements(a) for a in node.args if isinstance(a, fx.Node))
        written = _elements(node)
        weights = model.get_submodule(node.target).weight.numel() if kind == "layer" else 0
        name = str(node.target) if node.op == "call_module" else node.name
        rows.append({"operator": name, "kind": kind, "elements_read": read, "elements_written": written,
                     "weight_bytes": weights})
    return pd.DataFrame(rows, columns=["operator", "kind", "elements_read", "elements_written", "weight_bytes"])


def system_energy(work: pd.DataFrame, params: SystemParams) -> pd.DataFrame:
    """``work`` plus per-inference energy of each peripheral component (J) and their total."""
    table = work.copy()
    is_layer, is_pool, is_add = (table["kind"] == kind for kind in ("layer", "pool", "residual_add"))
    total_weights = int(table["weight_bytes"].sum())
    fits = total_weights <= params.weight_capacity_bytes
    table["reload_bytes_per_inference"] = 0.0 if fits else table["weight_bytes"] / params.weight_reuse_inferences
    table["energy_requantize_j"] = is_layer * table["elements_written"] * params.energy_requantize_j
    table["energy_pool_j"] = is_pool * table["elements_read"] * params.energy_pool_element_j
    table["energy_residual_add_j"] = is_add * table["elements_written"] * params.energy_residual_add_j
    table["energy_buffer_j"] = (table["elements_read"] + table["elements_written"]) * params.energy_buffer_byte_j
    table["energy_weight_reload_j"] = table["reload_bytes_per_inference"] * params.energy_weight_write_byte_j
    table["energy_system_j"] = table[[f"energy_{c}_j" for c in COMPONENTS]].sum(axis=1)
    return table


def component_totals(table: pd.DataFrame) -> dict[str, float]:
    """Per-inference energy of each peripheral component and of all of them."""
    totals = {f"energy_{c}_per_inference_j": float(table[f"energy_{c}_j"].sum()) for c in COMPONENTS}
    totals["energy_system_per_inference_j"] = float(table["energy_system_j"].sum())
    return totals
