"""Training stages of the super-resolution kind: `sr_train` trains the dense network,
`featreg_train` fine-tunes it with Feature Regularization (one model, several sparsity
levels). Both read the prepared train and validation images, never the test sets.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import save_table
from cimflow.compress.featreg.method import finetune
from cimflow.methods import METHODS
from cimflow.modelio import ModelSpec, load_model, save_model
from cimflow.preprocess import Preprocessor
from cimflow.sr import data as srdata
from cimflow.sr.objective import SuperResolution, adam
from cimflow.stages.common import outputs_exist, setup_torch, stage_params
from cimflow.train import fit, seed_everything

STRUCTURED = "sr_channel"  # the structured-pruning baseline: featreg's recipe in channel mode
IDENTITY = Preprocessor(0, (0.0,), (1.0,))  # SR models take Y / 255 at native size


def _splits(task: str) -> tuple[srdata.SrSet, srdata.SrSet, list[Path]]:
    inputs = [layout.path(p, task=task) for p in (layout.PREPARED_TRAIN, layout.PREPARED_VAL)]
    return srdata.load_sr_set(inputs[0]), srdata.load_sr_set(inputs[1]), inputs


def _log_history(run_: tracking.StageRun, history: list[dict]) -> None:
    for row in history:
        run_.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
    run_.log_metrics({"train_seconds": sum(r["seconds"] for r in history)})


def run_train(task: str, method: str, seed: int, params_file: Path) -> None:
    """`sr_train`: the dense network from scratch."""
    params, values = stage_params("sr_train", params_file, task=task)
    setup_torch(params)
    cfg = params.train[task]
    train, val, inputs = _splits(task)
    seed_everything(seed)
    spec = ModelSpec(cfg.model.to_ref(), 1, 0, IDENTITY, (), scale=train.scale)
    model = spec.build()
    outs = [layout.path(p, task=task, seed=seed, method=method) for p in (layout.MODEL, layout.HISTORY)]
    with tracking.stage_run("sr_train", values, inputs, task=task, method=method, seed=seed) as run_:
        objective = SuperResolution(train, val, cfg.patch_size, cfg.patches_per_epoch)
        history = fit(model, objective, cfg, seed, make_optimizer=adam)
        _log_history(run_, history)
        save_model(outs[0], model.cpu(), spec)
        save_table(outs[1], pd.DataFrame(history).drop(columns=["seconds"]))  # no wall-clock: reruns are equal
        run_.log_outputs(outputs_exist(outs))


def run_featreg(task: str, method: str, seed: int, params_file: Path) -> None:
    """`featreg_train`: fine-tune the dense model with the sparsifier and regularizer at every
    level, then calibrate each level's thresholds on the validation images. Method
    ``sr_channel`` runs the same recipe with static channel masks ranked on training
    patches (the structured-pruning baseline at the same levels and epochs)."""
    params, values = stage_params("featreg_train", params_file, task=task)
    setup_torch(params)
    cfg, fr = params.train[task], params.featreg[task]
    train, val, inputs = _splits(task)
    source = layout.path(layout.MODEL, task=task, seed=seed, method=METHODS[method].source)
    inputs.append(source)
    seed_everything(seed)
    model, spec = load_model(source)
    mode = "channel" if method == STRUCTURED else fr.mode
    outs = {Path(p).stem: layout.path(p, task=task, seed=seed, method=method) for p in METHODS[method].outputs}
    with tracking.stage_run("featreg_train", values, inputs, task=task, method=method, seed=seed) as run_:
        sparsifier, history = finetune(model, train, val, cfg, fr, mode, fr.levels, seed)
        sparsifier.remove()
        _log_history(run_, history)
        save_model(outs["model"], model, spec)
        save_table(outs["history"], pd.DataFrame(history).drop(columns=["seconds"]))
        save_table(outs["thresholds"], sparsifier.table().assign(mode=sparsifier.mode))
        run_.log_outputs(outputs_exist(list(outs.values())))
