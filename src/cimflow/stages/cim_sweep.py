"""Stage `cim_sweep`: calibrated accuracy and TOPS/W against ADC bits, capacitor mismatch,
rows per column, bias-DAC bits and the accumulation mode, each swept with every other
setting at its params.yaml value. Every point recalibrates its chip and re-maps the model
(segments and ADC ranges from the same training images as stage `map`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from cimflow import layout, tracking
from cimflow.artifacts import save_table
from cimflow.cim.calibration import calibrate
from cimflow.cim.config import MacroConfig, MappingPolicy
from cimflow.cim.energy import performance
from cimflow.data.split import Split
from cimflow.hardware import full_scales
from cimflow.params.cim import CimParams
from cimflow.quantize import load_int8
from cimflow.measured_inl import load_measured_inl, measured_inl_inputs
from cimflow.stages.cim_common import accuracy_and_counters, cim_model, relu_layers
from cimflow.stages.common import load_split, outputs_exist, sample_indices, setup_torch, stage_params

MACRO_KNOBS = ("adc_bits", "cap_mismatch_sigma", "rows", "bias_dac_bits")
MAPPING_KNOBS = ("accumulation",)


def sweep_points(cim: CimParams) -> list[tuple[str, int | float | str, MacroConfig, MappingPolicy]]:
    """(knob, value, macro, policy) of every point: one knob changed from params.yaml."""
    points = []
    for knob in MACRO_KNOBS + MAPPING_KNOBS:
        for value in getattr(cim.sweep, knob):
            where = f"cim.sweep.{knob}={value}"
            macro = cim.macro if knob in MAPPING_KNOBS else MacroConfig.from_mapping(
                cim.macro.model_dump() | {knob: value}, where)
            policy = cim.mapping.model_copy(update={knob: value}) if knob in MAPPING_KNOBS else cim.mapping
            points.append((knob, value, macro, policy))
    return points


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("cim_sweep", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path = layout.path(layout.INT8_MODEL, task=task, seed=seed, method=method)
    mapping = layout.path(layout.CIM_MAPPING, task=task, seed=seed, method=method)
    inputs = [int8_path, mapping, layout.path(layout.PREPARED_TRAIN, task=task), layout.path(layout.PREPARED_TEST, task=task),
              *measured_inl_inputs(cim)]
    train, test = load_split(inputs[2]), load_split(inputs[3])
    idx = sample_indices(len(test.labels), cim.sweep.test_images, seed)
    subset = Split(test.images[idx], test.labels[idx], test.class_names)
    calib = sample_indices(len(train.labels), cim.calibration_images, seed)  # the images stage `map` uses
    qmodel, spec = load_int8(int8_path)
    batches = [spec.prep(train.images[calib[i : i + cim.batch_size]]) for i in range(0, len(calib), cim.batch_size)]
    relu = relu_layers(spec)
    measured = load_measured_inl(cim)
    rows = []
    with tracking.stage_run("cim_sweep", values, inputs, task=task, method=method, seed=seed) as run_:
        for knob, value, macro, policy in tqdm(sweep_points(cim), desc=f"sweep {task}/{method}", disable=None):
            tables = calibrate(macro, cim.chip_seed, cim.calibration.samples_per_code, cim.calibration.trim_repeats,
                               measured)
            scales = full_scales(qmodel, batches, macro, policy, relu, cim.full_scale_percentile)
            model, spec, plans = cim_model(int8_path, macro, cim.model_copy(update={"mapping": policy}), scales, tables)
            acc, _, counts = accuracy_and_counters(model, spec, plans, subset, cim.batch_size)
            perf = performance(counts, macro)
            conversions = counts["conversions_full"] + counts["conversions_sign_only"]
            rows.append({"knob": knob, "setting": str(value),
                         "value": float("nan") if isinstance(value, str) else float(value),
                         "accuracy": acc, "tops_per_w": perf["tops_per_w"],
                         "energy_per_inference_j": perf["energy_j"] / len(idx),
                         "conversions_per_inference": conversions / len(idx),
                         "sign_only_fraction": counts["conversions_sign_only"] / max(conversions, 1)})
        out = layout.path(layout.CIM_SWEEP, task=task, seed=seed, method=method)
        save_table(out, pd.DataFrame(rows))
        run_.log_outputs(outputs_exist([out]))
