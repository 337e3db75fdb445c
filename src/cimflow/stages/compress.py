"""Stages of the ADMM method: progressive pruning (of single weights, or of whole filters,
which are then removed), quantization of the pruned model, binarization, magnitude pruning
at the same ratios and budget for comparison, and the ratio sweep of the three pruners.

Each method stage writes the compressed float model (for the int8 export and the CiM mapping like
any other), its masks (bit-packed) or integer codes with per-layer scales and widths
(which the export keeps exactly), and a Parquet table of every step and period. Every
check along the way (each period's and step's accuracy) is on the validation split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from cimflow import layout, tracking
from cimflow.artifacts import load_masks, save_masks, save_table
from cimflow.compress.admm.params import AdmmPruneParams
from cimflow.compress.admm.solver import PruneResult, admm_prune, admm_quantize, constrained_layers, count_weights
from cimflow.compress.admm.magnitude import magnitude_prune
from cimflow.compress.admm.sweep import sweep_schedule
from cimflow.errors import ParamsError
from cimflow.methods import METHODS
from cimflow.modelio import ModelSpec, load_model, save_model
from cimflow.shrink import shrink
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
        elif stage == "admm_filter":
            result = admm_prune(*args, cfg.filter, seed)
            model, spec = _without_pruned_filters(model, spec, result)
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


def _without_pruned_filters(model: nn.Module, spec: ModelSpec, result: PruneResult) -> tuple[nn.Module, ModelSpec]:
    """The filter-pruned network with its zero filters (weights and bias held at 0) removed
    for real: the same function, fewer output channels, so fewer columns on the chip."""
    keep = {name: torch.as_tensor(mask).flatten(1).any(dim=1) for name, mask in result.masks.items()}
    small = shrink(model.cpu(), keep)
    return small, spec.shrunk(small)


def _sweep_pruner(pruner: str, model: nn.Module, args: tuple, schedule: AdmmPruneParams, seed: int) -> PruneResult:
    """One sweep point's pruning: ADMM, or magnitude pruning on the same schedule and budget."""
    if pruner == "admm_prune":
        return admm_prune(model, *args, schedule, seed)
    return magnitude_prune(model, *args, schedule, seed, pruner.removeprefix("magnitude_"))


def run_sweep(task: str, method: str, seed: int, target: int, params_file: Path) -> None:
    """Prune the baseline of ``seed`` with ``method`` to ``target``x overall (one sweep point)."""
    params, values = stage_params("sweep_prune", params_file, task=task)
    setup_torch(params)
    seed_everything(seed)
    cfg, base = params.admm[task], params.train[task]
    if method not in cfg.sweep.methods or target not in cfg.sweep.targets:
        raise ParamsError(f"admm.{task}.sweep has methods {cfg.sweep.methods} and targets {cfg.sweep.targets}; "
                          f"got method {method!r}, target {target}")
    inputs = [*(layout.path(p, task=task) for p in (layout.PREPARED_TRAIN, layout.PREPARED_VAL)),
              layout.path(layout.MODEL, task=task, seed=seed, method="baseline")]
    train_split, val_split = load_split(inputs[0]), load_split(inputs[1])
    model, spec = load_model(inputs[2])
    sizes = {n: m.weight.numel() for n, m in constrained_layers(model, cfg.prune.steps[0].ratios).items()}
    schedule = sweep_schedule(cfg.prune, sizes, target)
    point = {"task": task, "seed": seed, "method": method, "target": target}
    out = {k: layout.path(p, **point) for k, p in (("model", layout.SWEEP_MODEL), ("steps", layout.SWEEP_STEPS))}
    with tracking.stage_run("sweep_prune", values, inputs, task=task, method=method, seed=seed) as run_:
        result = _sweep_pruner(method, model, (train_split, val_split, spec.prep, base), schedule, seed)
        save_model(out["model"], model.cpu(), spec)
        save_table(out["steps"], pd.DataFrame(result.rows).assign(sweep_target=target))
        nonzero, total = count_weights(model)
        run_.log_metrics({"sweep_target": target, "compression_ratio": total / max(nonzero, 1),
                          "val_accuracy": [r for r in result.rows if "val_accuracy" in r][-1]["val_accuracy"]})
        run_.log_outputs(outputs_exist(list(out.values())))
