"""Stage `evaluate`: float and int8 test accuracy, true size and compute of one
(task, seed, method); stage `evaluate_sweep`: float test accuracy and compression of one
ratio-sweep point. With evaluate_cim, cim_sweep and the SR evaluators, the only stages
that read the test split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from cimflow import layout, tracking
from cimflow.artifacts import save_json
from cimflow.evaluate import count_macs, count_parameters, count_weights, storage, wilson_interval
from cimflow.modelio import load_model
from cimflow.quantize import load_int8
from cimflow.stages.common import load_split, outputs_exist, setup_torch, stage_params
from cimflow.train import evaluate_model


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("evaluate", params_file)
    setup_torch(params)
    cfg = params.evaluate
    inputs = [
        layout.path(layout.MODEL, task=task, seed=seed, method=method),
        layout.path(layout.INT8_MODEL, task=task, seed=seed, method=method),
        layout.path(layout.PREPARED_TEST, task=task),
    ]
    model, spec = load_model(inputs[0])
    qmodel, _ = load_int8(inputs[1])
    test = load_split(inputs[2])
    cpu = torch.device("cpu")
    metrics: dict[str, float | int | str] = {"task": task, "method": method, "seed": seed,
                                             "model": spec.model.class_name, "test_samples": len(test.labels)}
    for name, net in (("float", model), ("int8", qmodel)):
        _, acc, pred = evaluate_model(net, test.images, test.labels, spec.prep, cfg.batch_size, cpu)
        low, high = wilson_interval(int(np.sum(pred == test.labels)), len(test.labels), cfg.confidence_level)
        metrics |= {f"{name}_accuracy": acc, f"{name}_accuracy_low": low, f"{name}_accuracy_high": high}
    total, nonzero = count_parameters(model)
    weights, nonzero_weights = count_weights(model)
    if spec.widths:  # channels removed for real: compression counts against the network as built
        weights = count_weights(dataclasses.replace(spec, widths=()).build())[0]
    sizes = storage(qmodel)
    metrics |= {
        "weights": weights,
        "nonzero_weights": nonzero_weights,
        "weight_compression": weights / max(nonzero_weights, 1),
        "int8_accuracy_drop": metrics["float_accuracy"] - metrics["int8_accuracy"],
        "parameters": total,
        "nonzero_parameters": nonzero,
        "macs": count_macs(model, (spec.in_channels, spec.prep.input_size, spec.prep.input_size)),
        "float_bytes": 4 * total,
        "int8_bytes": sizes.int8_bytes,
        "dense_bytes": sizes.dense_bytes,
        "stored_bytes": sizes.sparse_bytes,
        "storage_encoding": sizes.describe(),
    }
    out = layout.path(layout.METRICS, task=task, seed=seed, method=method)
    with tracking.stage_run("evaluate", values, inputs, task=task, method=method, seed=seed) as run_:
        save_json(out, metrics)
        run_.log_metrics({k: v for k, v in metrics.items() if not isinstance(v, str)})
        run_.log_outputs(outputs_exist([out]))


def run_sweep(task: str, method: str, seed: int, target: int, params_file: Path) -> None:
    params, values = stage_params("evaluate_sweep", params_file)
    setup_torch(params)
    cfg = params.evaluate
    point = {"task": task, "seed": seed, "method": method, "target": target}
    inputs = [layout.path(layout.SWEEP_MODEL, **point), layout.path(layout.PREPARED_TEST, task=task)]
    model, spec = load_model(inputs[0])
    test = load_split(inputs[1])
    _, accuracy, pred = evaluate_model(model, test.images, test.labels, spec.prep, cfg.batch_size,
                                       torch.device("cpu"))
    low, high = wilson_interval(int(np.sum(pred == test.labels)), len(test.labels), cfg.confidence_level)
    weights, nonzero = count_weights(model)
    metrics = point | {"test_samples": len(test.labels), "float_accuracy": accuracy, "float_accuracy_low": low,
                       "float_accuracy_high": high, "weights": weights, "nonzero_weights": nonzero,
                       "weight_compression": weights / max(nonzero, 1)}
    out = layout.path(layout.SWEEP_METRICS, **point)
    with tracking.stage_run("evaluate_sweep", values, inputs, task=task, method=method, seed=seed) as run_:
        save_json(out, metrics)
        run_.log_metrics({k: v for k, v in metrics.items() if not isinstance(v, str)})
        run_.log_outputs(outputs_exist([out]))
