"""Stage `map`: place an int8 model on the macro. Sets each layer's ADC full scale from
training images and records, per layer, the tiling and the work of one inference
(``cim_mapping.parquet``), and per operator the peripheral work and energy outside the
macro (``cim_system.parquet``, :mod:`cimflow.peripheral`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import save_table
from cimflow.hardware import full_scales
from cimflow.measured_inl import measured_inl_inputs
from cimflow.peripheral import graph_work, system_energy
from cimflow.quantize import fold_batchnorm, load_int8, quantized_layers
from cimflow.stages.cim_common import (
    accuracy_and_counters, cim_model, load_calibration, relu_layers, without_fused_relu,
)
from cimflow.stages.common import load_split, outputs_exist, sample_indices, setup_torch, stage_params
from cimflow.data.split import Split


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("map", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path = layout.path(layout.INT8_MODEL, task=task, seed=seed, method=method)
    inputs = [int8_path, layout.path(layout.PREPARED_TRAIN, task=task), Path(layout.CIM_CODES), Path(layout.CIM_TRIM),
              *measured_inl_inputs(cim)]
    train = load_split(inputs[1])
    idx = sample_indices(len(train.labels), cim.calibration_images, seed)
    calib = Split(train.images[idx], train.labels[idx], train.class_names)
    qmodel, spec = load_int8(int8_path)
    batches = [spec.prep(calib.images[i : i + cim.batch_size]) for i in range(0, len(idx), cim.batch_size)]
    relu = relu_layers(spec)
    scales = full_scales(qmodel, batches, cim.macro, cim.mapping, relu, cim.full_scale_percentile)
    unfused = full_scales(qmodel, batches, without_fused_relu(cim.macro), cim.mapping, relu, cim.full_scale_percentile)
    out = layout.path(layout.CIM_MAPPING, task=task, seed=seed, method=method)
    with tracking.stage_run("map", values, inputs, task=task, method=method, seed=seed) as run_:
        model, spec, plans = cim_model(int8_path, cim.macro, cim, scales, load_calibration())
        accuracy_and_counters(model, spec, plans, calib, cim.batch_size)
        rows = []
        for name, layer in quantized_layers(qmodel):
            plan, n, counts = plans[name], len(idx), plans[name].counters
            placed = plan.layout
            k, m = plan.mapped.shape
            conversions = counts["conversions_full"] + counts["conversions_sign_only"]
            rows.append({
                "layer": name, "kind": layer.kind, "k": k, "m": m, "segments": plan.mapped.segments,
                "segment_rows": [hi - lo for lo, hi in placed.bounds], "accumulation": placed.accumulation,
                "fused_relu": plan.fused,
                "bias_placement": "rows" if placed.bias_inputs is not None
                else "reference" if placed.reference_bias is not None else "digital",
                "bias_rows": 0 if placed.bias_inputs is None else len(placed.bias_inputs),
                "dead_columns": placed.dead_columns,
                "bias_saturated_columns": plan.bias_saturated_columns,
                "full_scales": plan.full_scales, "full_scales_unfused": unfused[name],
                "active_segment_columns": int(plan.mapped.active.sum()),
                "skipped_segment_columns": int(plan.mapped.active.size - plan.mapped.active.sum()),
                "macs": counts["macs"] / n, "cycles": counts["cycles"] / n,
                "conversions_full": counts["conversions_full"] / n,
                "conversions_sign_only": counts["conversions_sign_only"] / n,
                "sign_only_fraction": counts["conversions_sign_only"] / max(conversions, 1),
                "hold_steps": counts["hold_steps"] / n,
                **{f"energy_{part}_j": counts[f"energy_{part}_j"] / n for part in ("array", "input", "adc", "digital")},
                "energy_j": counts["energy_total_j"] / n,
            })
        table = pd.DataFrame(rows)
        shape = (1, spec.in_channels, spec.prep.input_size, spec.prep.input_size)
        system = system_energy(graph_work(fold_batchnorm(spec.build().eval()), shape), cim.system)
        system_out = layout.path(layout.CIM_SYSTEM, task=task, seed=seed, method=method)
        save_table(out, table)
        save_table(system_out, system)
        run_.log_metrics({"cycles_per_inference": table["cycles"].sum(), "energy_per_inference_j": table["energy_j"].sum(),
                          "fused_layers": int(table["fused_relu"].sum()),
                          "bias_saturated_columns": float(table["bias_saturated_columns"].sum())})
        run_.log_outputs(outputs_exist([out, system_out]))
