"""Stage `evaluate_sr`: a super-resolution model on the task's test sets (the only stage
that reads them): PSNR/SSIM on Y beside the bicubic baseline, MACs from the actual
non-zeros and feature sparsity, at every sparsity level of a Feature Regularization model.
Artifacts: the summary (JSON), one row per (level, image, layer) (Parquet), and centre
crops of the first image of each set for the report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import ArtifactError, load_table, save_json, save_table, save_tensors
from cimflow.compress.featreg.sparsify import Sparsifier
from cimflow.methods import METHODS
from cimflow.modelio import load_model
from cimflow.sr import data as srdata
from cimflow.sr.evaluate import bicubic_scores, evaluate, summary
from cimflow.stages.common import outputs_exist, setup_torch, stage_params


def method_thresholds(task: str, seed: int, method: str) -> tuple[pd.DataFrame | None, list[Path]]:
    """The method's feature-sparsifier table (THRESHOLDS; None for a method without one) and
    the file as a stage input (shared by the SR chip stages)."""
    if layout.THRESHOLDS not in METHODS[method].outputs:
        return None, []
    path = layout.path(layout.THRESHOLDS, task=task, seed=seed, method=method)
    return load_table(path), [path]


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("evaluate_sr", params_file, task=task)
    setup_torch(params)
    model_path = layout.path(layout.MODEL, task=task, seed=seed, method=method)
    test_path = layout.path(layout.PREPARED_TEST, task=task)
    model, _ = load_model(model_path)
    table, thresholds = method_thresholds(task, seed, method)
    try:
        sparsifier = None if table is None else Sparsifier.from_table(model, table, str(thresholds[0]))
    except ValueError as exc:
        raise ArtifactError(str(exc)) from exc
    inputs = [model_path, test_path, *thresholds]
    test = srdata.load_sr_set(test_path)
    outs = [layout.path(p, task=task, seed=seed, method=method)
            for p in (layout.SR_METRICS, layout.SR_SPARSITY, layout.SR_SAMPLES)]
    with tracking.stage_run("evaluate_sr", values, inputs, task=task, method=method, seed=seed) as run_:
        result = evaluate(model, test, sparsifier)
        sets = summary(result, bicubic_scores(test))
        save_json(outs[0], {"kind": "super_resolution", "task": task, "method": method, "seed": seed,
                            "scale": test.scale, "sets": sets})
        layers = result.layers.merge(result.images[["level", "set", "image", "psnr"]], on=["level", "set", "image"])
        save_table(outs[1], layers)
        save_tensors(outs[2], result.samples, {"scale": str(test.scale)})
        for set_name, entry in sets.items():
            for label, row in entry["levels"].items():
                run_.log_metrics({f"{set_name}_{label}_{k}": v for k, v in row.items()})
            run_.log_metrics({f"{set_name}_bicubic_psnr": entry["bicubic_psnr"]})
        run_.log_outputs(outputs_exist(outs))
