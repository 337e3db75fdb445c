"""Stages of the ADMM method: progressive pruning, quantization of the pruned model,
binarization, and magnitude pruning at the same ratios and budget for comparison.

Each writes the compressed float model (for the int8 export and the CiM mapping like
any other), its masks (bit-packed) or integer codes with per-layer scales and widths
(which the export keeps exactly), and a Parquet table of every step and period. Every
check along the way (each period's and step's accuracy) is on the validation split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import load_masks, save_masks, save_table
from cimflow.compress.admm.solver import admm_prune, admm_quantize, count_weights
from cimflow.compress.admm.magnitude import magnitude_prune
from cimflow.methods import METHODS
from cimflow.modelio import load_model, save_model
from cimflow.quantize import save_codes
from cimflow.stages.common import load_split, outputs_exist, setup_torch, stage_params
from cimflow.train import seed_everything


def run(stage: str, task: str, method: str, seed: int, params_file: Path) -> None:
    """Compress the model of ``method``'s source method (the artifacts the method table
    says it reads) into ``method``."""
    params, values = stage_params(stage, params_file, task=task)
    setup_torch(params)
    seed_everything(seed)
    cfg, base = params.admm[task], params.train[task]
    entry = METHODS[method]
    reads = {p: layout.path(p, task=task, seed=seed, method=entry.source) for p in entry.reads}
    inputs = [*(layout.path(p, task=task) for p in (layout.PREPARED_TRAIN, layout.PREPARED_VAL)), *reads.values()]
    train_split, val_split = load_split(inputs[0]), load_split(inputs[1])
    model, spec = load_model(reads[layout.MODEL])
    out = {k: layout.path(p, task=task, seed=seed, method=method)
           for k, p in (("model", layout.MODEL), ("steps", layout.STEPS), ("masks", layout.MASKS),
                        ("quantized", layout.QUANTIZED))}
    with tracking.stage_run(stage, values, inputs, task=task, method=method, seed=seed) as run_:
        args = (model, train_split, val_split, spec.prep, base)
        if stage == "admm_prune":
            result = admm_prune(*args, cfg.prune, seed)
        elif stage == "magnitude_prune":
            result = magnitude_prune(*args, cfg.prune, seed, method.removeprefix("magnitude_"))
        elif stage == "admm_quantize":
            result = admm_quantize(*args, cfg.quantize, seed, masks=load_masks(reads[layout.MASKS]))
        else:
            result = admm_quantize(*args, cfg.binarize, seed, masks=None)
        written = [out["model"], out["steps"]]
        if hasattr(result, "masks"):
            save_masks(out["masks"], result.masks)
            written.append(out["masks"])
        else:
            bits = (cfg.quantize if stage == "admm_quantize" else cfg.binarize).bits
            save_codes(out["quantized"], result.codes, result.scales, dict(bits))
            written.append(out["quantized"])
        save_model(out["model"], model.cpu(), spec)
        save_table(out["steps"], pd.DataFrame(result.rows))
        nonzero, total = count_weights(model)
        final = [r for r in result.rows if "val_accuracy" in r][-1]["val_accuracy"]
        run_.log_metrics({"nonzero_weights": nonzero, "weights": total, "compression_ratio": total / max(nonzero, 1),
                          "val_accuracy": final})
        run_.log_outputs(outputs_exist(written))
