"""Stages of the ADMM method: progressive pruning, quantization of the pruned model,
binarization, and magnitude pruning at the same ratios and budget for comparison.

Each writes the compressed float model (for the int8 export and the CiM mapping like
any other), its masks (bit-packed) or integer codes with per-layer scales, and a
Parquet table of every step and period.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import load_masks, save_masks, save_table, save_tensors
from cimflow.compress.admm import admm_prune, admm_quantize, count_weights
from cimflow.compress.magnitude import magnitude_prune
from cimflow.modelio import load_model, save_model
from cimflow.stages.common import load_split, outputs_exist, setup_torch, stage_params
from cimflow.train import seed_everything

SOURCE_METHOD = {"admm_prune": "baseline", "admm_quant": "admm_prune", "admm_binary": "baseline",
                 "magnitude_one_shot": "baseline", "magnitude_iterative": "baseline"}


def _save_codes(path: Path, codes: dict[str, np.ndarray], scales: dict[str, float]) -> None:
    tensors = {f"{name}.codes": c for name, c in codes.items()}
    tensors |= {f"{name}.scale": np.array([s], dtype=np.float32) for name, s in scales.items()}
    save_tensors(path, tensors, {"format": "cimflow-quantized-v1"})


def run(stage: str, task: str, method: str, params_file: Path) -> None:
    """Compress ``SOURCE_METHOD[method]``'s model of ``task`` into ``method``."""
    params, values = stage_params(stage, params_file, task=task)
    setup_torch(params)
    seed_everything(params.seed)
    cfg, base = params.admm[task], params.train[task]
    source = SOURCE_METHOD[method]
    inputs = [layout.path(p, task=task) for p in (layout.PREPARED_TRAIN, layout.PREPARED_TEST)]
    inputs.append(layout.path(layout.MODEL, task=task, method=source))
    if stage == "admm_quantize":
        inputs.append(layout.path(layout.MASKS, task=task, method=source))
    train_split, test_split = load_split(inputs[0]), load_split(inputs[1])
    model, spec = load_model(inputs[2])
    out = {k: layout.path(p, task=task, method=method)
           for k, p in (("model", layout.MODEL), ("steps", layout.STEPS), ("masks", layout.MASKS),
                        ("quantized", layout.QUANTIZED))}
    with tracking.stage_run(stage, values, inputs, task=task, method=method) as run_:
        args = (model, train_split, test_split, spec.prep, base)
        if stage == "admm_prune":
            result = admm_prune(*args, cfg.prune, params.seed)
        elif stage == "magnitude_prune":
            result = magnitude_prune(*args, cfg.prune, params.seed, method.removeprefix("magnitude_"))
        elif stage == "admm_quantize":
            result = admm_quantize(*args, cfg.quantize, params.seed, masks=load_masks(inputs[3]))
        else:
            result = admm_quantize(*args, cfg.binarize, params.seed, masks=None)
        written = [out["model"], out["steps"]]
        if hasattr(result, "masks"):
            save_masks(out["masks"], result.masks)
            written.append(out["masks"])
        else:
            _save_codes(out["quantized"], result.codes, result.scales)
            written.append(out["quantized"])
        save_model(out["model"], model.cpu(), spec)
        save_table(out["steps"], pd.DataFrame(result.rows))
        nonzero, total = count_weights(model)
        final = [r for r in result.rows if "test_accuracy" in r][-1]["test_accuracy"]
        run_.log_metrics({"nonzero_weights": nonzero, "weights": total, "compression_ratio": total / max(nonzero, 1),
                          "test_accuracy": final})
        run_.log_outputs(outputs_exist(written))
