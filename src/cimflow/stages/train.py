"""Stage `train`: train a task's network (baseline = no compression hooks)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import save_table
from cimflow.modelio import ModelSpec, save_model
from cimflow.preprocess import Preprocessor
from cimflow.stages.common import load_split, outputs_exist, setup_torch, stage_params
from cimflow.train import seed_everything, train


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("train", params_file, task=task)
    setup_torch(params)
    cfg = params.train[task]
    inputs = [layout.path(p, task=task) for p in (layout.PREPARED_TRAIN, layout.PREPARED_VAL)]
    train_split, val_split = (load_split(p) for p in inputs)
    seed_everything(seed)
    spec = ModelSpec(
        cfg.model.to_ref(),
        train_split.images.shape[1],
        len(train_split.class_names),
        Preprocessor.fit(train_split.images, cfg.input_size),
        train_split.class_names,
    )
    model = spec.build()
    outs = [layout.path(p, task=task, seed=seed, method=method) for p in (layout.MODEL, layout.HISTORY)]
    with tracking.stage_run("train", values, inputs, task=task, method=method, seed=seed) as run_:
        history = train(model, train_split.images, train_split.labels, val_split.images, val_split.labels,
                        spec.prep, cfg, seed)
        for row in history:
            run_.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        model.cpu()
        save_model(outs[0], model, spec)
        # Wall-clock seconds stay out of the artifact so reruns are byte-identical.
        save_table(outs[1], pd.DataFrame(history).drop(columns=["seconds"]))
        run_.log_metrics({"train_seconds": sum(r["seconds"] for r in history)})
        run_.log_outputs(outputs_exist(outs))
