"""Stage `evaluate_cim`: a model on the simulated chip. Int8 digital accuracy against CiM
accuracy without and with calibration; energy, latency, GOPS and TOPS/W per inference,
and what the fused ReLU saves. Energy is split into the macro's components (array,
drivers, ADC, digital) and the peripheral ones of stage `map` (requantization, pooling,
residual adds, buffers, weight reloads); TOPS/W is given for the macro alone, for the
system, and for the macro on its random-int8 reference workload."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cimflow import layout, tracking
from cimflow.artifacts import load_table, save_json
from cimflow.cim.energy import performance, reference_workload
from cimflow.evaluate import wilson_interval
from cimflow.measured_inl import measured_inl_inputs
from cimflow.peripheral import component_totals
from cimflow.quantize import load_int8
from cimflow.stages.cim_common import (
    accuracy_and_counters, cim_model, load_calibration, scales_from_mapping, without_fused_relu,
)
from cimflow.stages.common import load_split, outputs_exist, setup_torch, stage_params


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("evaluate_cim", params_file)
    setup_torch(params)
    cim = params.cim
    int8_path = layout.path(layout.INT8_MODEL, task=task, seed=seed, method=method)
    mapping = layout.path(layout.CIM_MAPPING, task=task, seed=seed, method=method)
    system = layout.path(layout.CIM_SYSTEM, task=task, seed=seed, method=method)
    inputs = [int8_path, mapping, system, layout.path(layout.PREPARED_TEST, task=task), Path(layout.CIM_CODES),
              Path(layout.CIM_TRIM), *measured_inl_inputs(cim)]
    test = load_split(inputs[3])
    peripheral = component_totals(load_table(system))
    calibration = load_calibration()
    n = len(test.labels)
    qmodel, spec = load_int8(int8_path)
    digital, _, _ = accuracy_and_counters(qmodel, spec, None, test, cim.batch_size)
    metrics: dict[str, float | str] = {"task": task, "method": method, "seed": seed, "test_samples": n,
                                       "int8_accuracy": digital}
    scales, unfused_scales = scales_from_mapping(mapping), scales_from_mapping(mapping, "full_scales_unfused")
    runs = {
        "uncalibrated": (cim.macro, None, scales),
        "calibrated": (cim.macro, calibration, scales),
        "calibrated_no_fused_relu": (without_fused_relu(cim.macro), calibration, unfused_scales),
    }
    with tracking.stage_run("evaluate_cim", values, inputs, task=task, method=method, seed=seed) as run_:
        for label, (macro, tables, scales) in runs.items():
            model, spec, plans = cim_model(int8_path, macro, cim, scales, tables)
            acc, pred, counts = accuracy_and_counters(model, spec, plans, test, cim.batch_size)
            perf = performance(counts, macro)
            metrics[f"cim_{label}_accuracy"] = acc
            if label == "calibrated":
                low, high = wilson_interval(int(np.sum(pred == test.labels)), n, params.evaluate.confidence_level)
                metrics |= {
                    "cim_calibrated_accuracy_low": low, "cim_calibrated_accuracy_high": high,
                    "cim_accuracy_drop_vs_int8": digital - acc,
                    "energy_per_inference_j": perf["energy_j"] / n,
                    "latency_per_inference_s": perf["seconds"] / n,
                    "cycles_per_inference": counts["cycles"] / n,
                    "gops": perf["gops"], "tops_per_w": perf["tops_per_w"],
                    "sign_only_fraction": counts["conversions_sign_only"]
                    / max(counts["conversions_full"] + counts["conversions_sign_only"], 1),
                    "conversions_per_inference": (counts["conversions_full"] + counts["conversions_sign_only"]) / n,
                    **{f"energy_{part}_per_inference_j": counts[f"energy_{part}_j"] / n
                       for part in ("array", "input", "adc", "digital")},
                    **peripheral,
                    "tops_per_w_system": perf["ops"] / (perf["energy_j"] + n * peripheral["energy_system_per_inference_j"])
                    / 1e12,
                    "tops_per_w_reference_workload": reference_workload(macro)["tops_per_w"],
                }
            if label == "calibrated_no_fused_relu":
                metrics["energy_per_inference_no_fused_relu_j"] = perf["energy_j"] / n
                metrics["tops_per_w_no_fused_relu"] = perf["tops_per_w"]
        out = layout.path(layout.CIM_METRICS, task=task, seed=seed, method=method)
        save_json(out, metrics)
        run_.log_metrics({k: v for k, v in metrics.items() if not isinstance(v, str)})
        run_.log_outputs(outputs_exist([out]))
