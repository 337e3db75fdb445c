"""Stage `export`: post-training int8 quantization of a trained model.

Activation ranges are calibrated on training images. A method that leaves its
weights on integer levels (ADMM quantization, binarization) hands its codes on, and
those layers export exactly: their int8 codes are the method's codes and the
dequantized weights are its levels, at the method's width. A super-resolution model
calibrates on seeded LR patches of its training images (``calibration_samples`` of them),
run dense: the sparsifier only zeroes entries, so the kept ones share the dense range."""

from __future__ import annotations

from pathlib import Path

from cimflow import layout, tracking
from cimflow.methods import METHODS, SUPER_RESOLUTION
from cimflow.modelio import load_model
from cimflow.quantize import load_codes, quantize_model, quantized_layers, save_int8
from cimflow.sr import data as srdata
from cimflow.stages.common import load_split, outputs_exist, sample_indices, setup_torch, stage_params


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("export", params_file)
    setup_torch(params)
    cfg = params.export
    inputs = [layout.path(layout.MODEL, task=task, seed=seed, method=method),
              layout.path(layout.PREPARED_TRAIN, task=task)]
    if layout.QUANTIZED in METHODS[method].outputs:
        inputs.append(layout.path(layout.QUANTIZED, task=task, seed=seed, method=method))
    model, spec = load_model(inputs[0])
    codes = load_codes(inputs[2]) if len(inputs) > 2 else None
    if params.kind(task) == SUPER_RESOLUTION:
        patches = srdata.calibration_patches(srdata.load_sr_set(inputs[1]), cfg.calibration_samples, seed)
        batches = list(patches.split(256))
    else:
        train_split = load_split(inputs[1])
        idx = sample_indices(len(train_split.labels), cfg.calibration_samples, seed)
        batches = [spec.prep(train_split.images[idx[i : i + 256]]) for i in range(0, len(idx), 256)]
    out = layout.path(layout.INT8_MODEL, task=task, seed=seed, method=method)
    with tracking.stage_run("export", values, inputs, task=task, method=method, seed=seed) as run_:
        qmodel = quantize_model(model, batches, cfg.weight_bits, cfg.activation_bits, cfg.activation_percentile,
                                fixed_codes=codes)
        save_int8(out, qmodel, spec)
        run_.log_metrics({"quantized_layers": len(quantized_layers(qmodel)),
                          "exact_code_layers": len(codes or {})})
        run_.log_outputs(outputs_exist([out]))
