"""Stage `export`: post-training int8 quantization of a trained model."""

from __future__ import annotations

from pathlib import Path

from cimflow import layout, tracking
from cimflow.evaluate import int8_model_bytes
from cimflow.modelio import load_model
from cimflow.quantize import quantize_model, quantized_layers, save_int8
from cimflow.stages.common import load_split, outputs_exist, sample_indices, setup_torch, stage_params


def run(task: str, method: str, params_file: Path) -> None:
    params, values = stage_params("export", params_file)
    setup_torch(params)
    cfg = params.export
    inputs = [layout.path(layout.MODEL, task=task, method=method), layout.path(layout.PREPARED_TRAIN, task=task)]
    model, spec = load_model(inputs[0])
    train_split = load_split(inputs[1])
    idx = sample_indices(len(train_split.labels), cfg.calibration_samples, params.seed)
    batches = [spec.prep(train_split.images[idx[i : i + 256]]) for i in range(0, len(idx), 256)]
    out = layout.path(layout.INT8_MODEL, task=task, method=method)
    with tracking.stage_run("export", values, inputs, task=task, method=method) as run_:
        qmodel = quantize_model(model, batches, cfg.weight_bits, cfg.activation_bits, cfg.activation_percentile)
        save_int8(out, qmodel, spec)
        run_.log_metrics({"int8_bytes": int8_model_bytes(qmodel), "quantized_layers": len(quantized_layers(qmodel))})
        run_.log_outputs(outputs_exist([out]))
