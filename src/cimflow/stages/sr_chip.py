"""Stages of a super-resolution model on the CD-CiM chip (cimflow.sr.chip), at every level
of its sparsifier: `map_sr` sets each level's ADC full scales from training patches and
records how each layer sits on the macro; `evaluate_sr_cim` runs the test sets on the
calibrated chip and on the int8 digital engine, with the macro's energy per image by
component and layer beside the peripheral energy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import ArtifactError, load_table, save_json, save_table
from cimflow.hardware import layout_layer
from cimflow.measured_inl import measured_inl_inputs
from cimflow.quantize import fold_batchnorm, load_int8, quantized_layers
from cimflow.sr import chip as srchip
from cimflow.sr import data as srdata
from cimflow.stages.cim_common import cim_model, load_calibration, relu_layers
from cimflow.stages.common import outputs_exist, setup_torch, stage_params
from cimflow.stages.evaluate_sr import method_sparsifier


def _paths(task: str, seed: int, method: str, *patterns: str) -> list[Path]:
    return [layout.path(p, task=task, seed=seed, method=method) for p in patterns]


def run_map(task: str, method: str, seed: int, params_file: Path) -> None:
    """`map_sr`: per level, the ADC full scales of every layer and its placement."""
    params, values = stage_params("map_sr", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path, train_path = _paths(task, seed, method, layout.INT8_MODEL, layout.PREPARED_TRAIN)
    qmodel, spec = load_int8(int8_path)
    sparsifier, thresholds = method_sparsifier(qmodel, task, seed, method)
    inputs = [int8_path, train_path, *thresholds]
    patches = srdata.calibration_patches(srdata.load_sr_set(train_path), cim.calibration_images, seed)
    relu = relu_layers(spec)
    (out,) = _paths(task, seed, method, layout.SR_CIM_MAPPING)
    with tracking.stage_run("map_sr", values, inputs, task=task, method=method, seed=seed) as run_:
        scales = srchip.ranges_per_level(qmodel, sparsifier, list(patches.split(cim.batch_size)), cim, relu)
        rows = []
        for name, layer in quantized_layers(qmodel):
            placed = layout_layer(layer, cim.macro, cim.mapping, name in relu)
            k, m = placed.weights.shape
            rows += [{"level": label, "layer": name, "k": k, "m": m, "segments": len(placed.bounds),
                      "accumulation": placed.accumulation, "fused_relu": placed.fused,
                      "dead_columns": placed.dead_columns, "full_scales": per_layer[name]}
                     for label, per_layer in scales.items()]
        table = pd.DataFrame(rows)
        save_table(out, table)
        run_.log_metrics({"levels": len(scales), "fused_layers": int(table["fused_relu"].sum() / len(scales))})
        run_.log_outputs(outputs_exist([out]))


def run_evaluate(task: str, method: str, seed: int, params_file: Path) -> None:
    """`evaluate_sr_cim`: the test sets on the calibrated chip, level by level."""
    params, values = stage_params("evaluate_sr_cim", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path, mapping_path, test_path = _paths(task, seed, method, layout.INT8_MODEL, layout.SR_CIM_MAPPING,
                                                layout.PREPARED_TEST)
    digital_model, spec = load_int8(int8_path)
    digital_sparsifier, thresholds = method_sparsifier(digital_model, task, seed, method)
    inputs = [int8_path, mapping_path, test_path, Path(layout.CIM_CODES), Path(layout.CIM_TRIM), *thresholds,
              *measured_inl_inputs(cim)]
    mapping = load_table(mapping_path)
    test = srdata.load_sr_set(test_path)
    calibration = load_calibration()
    float_model = fold_batchnorm(spec.build().eval())
    digital = srchip.ChipPass(digital_model, None, digital_sparsifier)
    outs = _paths(task, seed, method, layout.SR_CIM_METRICS, layout.SR_CIM_LAYERS)
    with tracking.stage_run("evaluate_sr_cim", values, inputs, task=task, method=method, seed=seed) as run_:
        frames = []
        for label in srchip.level_labels(digital_sparsifier):
            rows = mapping[mapping["level"] == label]
            if rows.empty:
                raise ArtifactError(f"{mapping_path}: no full scales for level {label}; run map_sr again")
            scales = {layer: [float(v) for v in fs] for layer, fs in zip(rows["layer"], rows["full_scales"],
                                                                         strict=True)}
            model, _, plans = cim_model(int8_path, cim.macro, cim, scales, calibration)
            chip_sparsifier, _ = method_sparsifier(model, task, seed, method)
            frames.append(srchip.evaluate_on_chip(label, srchip.ChipPass(model, plans, chip_sparsifier), digital,
                                                  test, cim, float_model))
        layers = pd.concat(frames, ignore_index=True)
        sets = srchip.summarize(layers, cim)
        save_json(outs[0], {"kind": "super_resolution", "task": task, "method": method, "seed": seed,
                            "scale": test.scale, "sets": sets})
        save_table(outs[1], layers)
        for set_name, entry in sets.items():
            for label, row in entry["levels"].items():
                run_.log_metrics({f"{set_name}_{label}_{k}": v for k, v in row.items()})
        run_.log_outputs(outputs_exist(outs))
