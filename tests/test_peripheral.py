"""Peripheral work from the graph: pooling, residual adds, buffer traffic and weight reloads."""

from __future__ import annotations

import yaml

from cimflow.models import build_model
from cimflow.params.cim import SystemParams
from cimflow.peripheral import component_totals, graph_work, system_energy
from cimflow.quantize import fold_batchnorm
from conftest import ROOT


def _params(**overrides) -> SystemParams:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())["cim"]["system"]
    return SystemParams.model_validate(raw | overrides)


def test_lenet5_work_is_counted_from_its_graph():
    work = graph_work(build_model("lenet5", 1, 10, 28).eval(), (1, 1, 28, 28))
    layers = work[work["kind"] == "layer"].set_index("operator")
    assert list(layers.index) == ["conv1", "conv2", "fc1", "fc2"]
    assert layers.loc["conv1", "elements_written"] == 20 * 24 * 24
    assert layers.loc["fc1", "weight_bytes"] == 800 * 500
    pools = work[work["kind"] == "pool"]
    assert list(pools["elements_read"]) == [20 * 24 * 24, 50 * 8 * 8]
    assert not (work["kind"] == "residual_add").any()


def test_resnet20_residual_adds_and_reloads():
    model = fold_batchnorm(build_model("resnet20", 3, 10, 32).eval())
    work = graph_work(model, (1, 3, 32, 32))
    adds = work[work["kind"] == "residual_add"]
    assert len(adds) == 9  # one per basic block
    assert adds["elements_written"].tolist()[:3] == [16 * 32 * 32] * 3
    resident = system_energy(work, _params(weight_capacity_bytes=10**7))
    reloaded = system_energy(work, _params(weight_capacity_bytes=8192, weight_reuse_inferences=4))
    assert component_totals(resident)["energy_weight_reload_per_inference_j"] == 0.0
    weights = work["weight_bytes"].sum()
    assert weights > 250_000  # about 0.27 M parameters: it cannot sit in 8 KB
    expected = weights / 4 * _params().energy_weight_write_byte_j
    assert abs(component_totals(reloaded)["energy_weight_reload_per_inference_j"] - expected) < 1e-15
    totals = component_totals(reloaded)
    assert abs(totals["energy_system_per_inference_j"] - sum(
        v for k, v in totals.items() if k != "energy_system_per_inference_j")) < 1e-15
