"""Stage `map`: place an int8 model on the macro. Sets each layer's ADC full scale from
training images and records, per layer, the tiling and the work of one inference."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import save_table
from cimflow.hardware import full_scales
from cimflow.quantize import load_int8, quantized_layers
from cimflow.stages.cim_common import accuracy_and_counters, cim_model, load_calibration
from cimflow.stages.common import load_split, outputs_exist, sample_indices, setup_torch, stage_params
from cimflow.data.split import Split


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("map", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path = layout.path(layout.INT8_MODEL, task=task, seed=seed, method=method)
    inputs = [int8_path, layout.path(layout.PREPARED_TRAIN, task=task), Path(layout.CIM_CODES), Path(layout.CIM_TRIM)]
    train = load_split(inputs[1])
    idx = sample_indices(len(train.labels), cim.calibration_images, seed)
    calib = Split(train.images[idx], train.labels[idx], train.class_names)
    qmodel, spec = load_int8(int8_path)
    batches = [spec.prep(calib.images[i : i + cim.batch_size]) for i in range(0, len(idx), cim.batch_size)]
    scales = full_scales(qmodel, batches, cim.macro.rows, cim.full_scale_percentile)
    out = layout.path(layout.CIM_MAPPING, task=task, seed=seed, method=method)
    with tracking.stage_run("map", values, inputs, task=task, method=method, seed=seed) as run_:
        model, spec, plans = cim_model(int8_path, cim.macro, cim, scales, load_calibration())
        accuracy_and_counters(model, spec, plans, calib, cim.batch_size)
        rows = []
        for name, layer in quantized_layers(qmodel):
            plan, n = plans[name], len(idx)
            k, m = plan.mapped.shape
            rows.append({
                "layer": name, "kind": layer.kind, "k": k, "m": m, "segments": plan.mapped.segments,
                "fused_relu": plan.fused, "bias_rows": 0 if plan.bias_inputs is None else len(plan.bias_inputs),
                "full_scale": plan.full_scale,
                "active_segment_columns": int(plan.mapped.active.sum()),
                "skipped_segment_columns": int(plan.mapped.active.size - plan.mapped.active.sum()),
                "macs": plan.counters["macs"] / n, "cycles": plan.counters["cycles"] / n,
                "conversions_full": plan.counters["conversions_full"] / n,
                "conversions_sign_only": plan.counters["conversions_sign_only"] / n,
                "energy_j": plan.counters["energy_total_j"] / n,
            })
        table = pd.DataFrame(rows)
        save_table(out, table)
        run_.log_metrics({"cycles_per_inference": table["cycles"].sum(), "energy_per_inference_j": table["energy_j"].sum(),
                          "fused_layers": int(table["fused_relu"].sum())})
        run_.log_outputs(outputs_exist([out]))
