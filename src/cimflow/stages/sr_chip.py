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
from cimflow.quantize import quantized_layers
from cimflow.sr import chip as srchip
from cimflow.sr import data as srdata
from cimflow.stages.cim_common import load_calibration, on_chip, relu_layers
from cimflow.stages.common import outputs_exist, setup_torch, stage_params
from cimflow.stages.evaluate_sr import method_thresholds


def _paths(task: str, seed: int, method: str, *patterns: str) -> list[Path]:
    return [layout.path(p, task=task, seed=seed, method=method) for p in patterns]


def _levels(task: str, seed: int, method: str, int8_path: Path) -> tuple[srchip.LevelModels, list[Path]]:
    """The int8 model at each level of the method, and the thresholds file that defines them."""
    table, thresholds = method_thresholds(task, seed, method)
    try:
        return srchip.LevelModels(int8_path, table, str((thresholds or [int8_path])[0])), thresholds
    except ValueError as exc:  # a table that does not fit the model (ShrinkError included)
        raise ArtifactError(str(exc)) from exc


def run_map(task: str, method: str, seed: int, params_file: Path) -> None:
    """`map_sr`: per level, the ADC full scales of every layer and its placement."""
    params, values = stage_params("map_sr", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path, train_path = _paths(task, seed, method, layout.INT8_MODEL, layout.PREPARED_TRAIN)
    levels, thresholds = _levels(task, seed, method, int8_path)
    inputs = [int8_path, train_path, *thresholds]
    patches = srdata.calibration_patches(srdata.load_sr_set(train_path), cim.calibration_images, seed)
    relu = relu_layers(levels.spec)
    (out,) = _paths(task, seed, method, layout.SR_CIM_MAPPING)
    with tracking.stage_run("map_sr", values, inputs, task=task, method=method, seed=seed) as run_:
        scales = srchip.ranges_per_level(levels, list(patches.split(cim.batch_size)), cim, relu)
        rows = []
        for label, per_layer in scales.items():
            for name, layer in quantized_layers(levels.build(label)):
                placed = layout_layer(layer, cim.macro, cim.mapping, name in relu)
                k, m = placed.weights.shape
                rows.append({"level": label, "layer": name, "k": k, "m": m, "segments": len(placed.bounds),
                             "accumulation": placed.accumulation, "fused_relu": placed.fused,
                             "dead_columns": placed.dead_columns, "full_scales": per_layer[name]})
        table = pd.DataFrame(rows)
        save_table(out, table)
        run_.log_metrics({"levels": len(scales)})
        run_.log_outputs(outputs_exist([out]))


def run_evaluate(task: str, method: str, seed: int, params_file: Path) -> None:
    """`evaluate_sr_cim`: the test sets on the calibrated chip, level by level."""
    params, values = stage_params("evaluate_sr_cim", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path, mapping_path, test_path = _paths(task, seed, method, layout.INT8_MODEL, layout.SR_CIM_MAPPING,
                                                layout.PREPARED_TEST)
    levels, thresholds = _levels(task, seed, method, int8_path)
    inputs = [int8_path, mapping_path, test_path, Path(layout.CIM_CODES), Path(layout.CIM_TRIM), *thresholds,
              *measured_inl_inputs(cim)]
    mapping = load_table(mapping_path)
    test = srdata.load_sr_set(test_path)
    calibration = load_calibration()
    relu = relu_layers(levels.spec)
    outs = _paths(task, seed, method, layout.SR_CIM_METRICS, layout.SR_CIM_LAYERS)
    with tracking.stage_run("evaluate_sr_cim", values, inputs, task=task, method=method, seed=seed) as run_:
        frames = []
        for label in levels.labels:
            rows = mapping[mapping["level"] == label]
            if rows.empty:
                raise ArtifactError(f"{mapping_path}: no full scales for level {label}; run map_sr again")
            scales = {layer: [float(v) for v in fs] for layer, fs in zip(rows["layer"], rows["full_scales"],
                                                                         strict=True)}
            model = levels.build(label)
            plans = on_chip(model, cim.macro, cim, scales, calibration, relu)
            frames.append(srchip.evaluate_on_chip(label, srchip.ChipPass(model, plans),
                                                  srchip.ChipPass(levels.build(label), None), test, cim,
                                                  levels.float_at(label)))
        layers = pd.concat(frames, ignore_index=True)
        sets = srchip.summarize(layers, cim)
        save_json(outs[0], {"kind": "super_resolution", "task": task, "method": method, "seed": seed,
                            "scale": test.scale, "sets": sets})
        save_table(outs[1], layers)
        for set_name, entry in sets.items():
            for label, row in entry["levels"].items():
                run_.log_metrics({f"{set_name}_{label}_{k}": v for k, v in row.items()})
        run_.log_outputs(outputs_exist(outs))
