"""Stage `cim_sweep`: calibrated accuracy and TOPS/W against ADC bits and capacitor
mismatch, each swept with every other macro parameter at its params.yaml value."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from cimflow import layout, tracking
from cimflow.artifacts import save_table
from cimflow.cim.calibration import calibrate
from cimflow.cim.config import MacroConfig
from cimflow.cim.energy import performance
from cimflow.data.split import Split
from cimflow.stages.cim_common import accuracy_and_counters, cim_model, scales_from_mapping
from cimflow.stages.common import load_split, outputs_exist, sample_indices, setup_torch, stage_params


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("cim_sweep", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path = layout.path(layout.INT8_MODEL, task=task, seed=seed, method=method)
    mapping = layout.path(layout.CIM_MAPPING, task=task, seed=seed, method=method)
    inputs = [int8_path, mapping, layout.path(layout.PREPARED_TEST, task=task)]
    test = load_split(inputs[2])
    idx = sample_indices(len(test.labels), cim.sweep.test_images, seed)
    subset = Split(test.images[idx], test.labels[idx], test.class_names)
    scales = scales_from_mapping(mapping)
    points = [("adc_bits", v) for v in cim.sweep.adc_bits] + [("cap_mismatch_sigma", v) for v in cim.sweep.cap_mismatch_sigma]
    rows = []
    with tracking.stage_run("cim_sweep", values, inputs, task=task, method=method, seed=seed) as run_:
        for knob, value in tqdm(points, desc=f"sweep {task}/{method}", disable=None):
            macro = MacroConfig.from_mapping(cim.macro.model_dump() | {knob: value}, f"cim.sweep.{knob}={value}")
            tables = calibrate(macro, cim.chip_seed, cim.calibration.samples_per_code, cim.calibration.trim_repeats)
            model, spec, plans = cim_model(int8_path, macro, cim, scales, tables)
            acc, _, counts = accuracy_and_counters(model, spec, plans, subset, cim.batch_size)
            perf = performance(counts, macro)
            rows.append({"knob": knob, "value": float(value), "accuracy": acc, "tops_per_w": perf["tops_per_w"],
                         "energy_per_inference_j": perf["energy_j"] / len(idx)})
        out = layout.path(layout.CIM_SWEEP, task=task, seed=seed, method=method)
        save_table(out, pd.DataFrame(rows))
        run_.log_outputs(outputs_exist([out]))
