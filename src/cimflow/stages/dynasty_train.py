"""Stage `dynasty_train`: train a task's network from scratch with DYNASTY block-wise
dynamic precision (method ``dynasty``) or with the same quantizers pinned at the
uniform baseline width (method ``dynasty_int8``), through the shared training loop.

Writes the model, the per-epoch history, the whole bit-width map history, the
refresh log, the cost-model table and a summary (modeled speedup and energy, and
the validation accuracy on the run's own maps)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import save_json, save_table
from cimflow.compress.dynasty.hook import DynastyHook
from cimflow.modelio import ModelSpec, save_model
from cimflow.preprocess import Preprocessor
from cimflow.stages.common import load_split, outputs_exist, setup_torch, stage_params
from cimflow.train import seed_everything, train

FIXED = {"dynasty": False, "dynasty_int8": True}


def run(task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params("dynasty_train", params_file, task=task)
    setup_torch(params)
    cfg, dyn = params.train[task], params.dynasty
    inputs = [layout.path(p, task=task) for p in (layout.PREPARED_TRAIN, layout.PREPARED_VAL)]
    train_split, val_split = (load_split(p) for p in inputs)
    seed_everything(seed)
    spec = ModelSpec(cfg.model.to_ref(), train_split.images.shape[1], len(train_split.class_names),
                     Preprocessor.fit(train_split.images, cfg.input_size), train_split.class_names)
    model = spec.build()
    hook = DynastyHook(dyn, seed, fixed_bits=dyn.cost.baseline_bits if FIXED[method] else None)
    out = {name: layout.path(p, task=task, seed=seed, method=method) for name, p in (
        ("model", layout.MODEL), ("history", layout.HISTORY), ("bitmaps", layout.BITMAPS),
        ("refreshes", layout.REFRESHES), ("cost", layout.COST), ("summary", layout.DYNASTY_SUMMARY))}
    with tracking.stage_run("dynasty_train", values, inputs, task=task, method=method, seed=seed) as run_:
        history = train(model, train_split.images, train_split.labels, val_split.images, val_split.labels,
                        spec.prep, cfg, seed, hooks=[hook])
        for row in history:
            run_.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
        save_model(out["model"], model.cpu(), spec)
        save_table(out["history"], pd.DataFrame(history).drop(columns=["seconds"]))
        save_table(out["bitmaps"], hook.map_history())
        save_table(out["refreshes"], hook.refresh_log())
        save_table(out["cost"], hook.cost_table())
        summary = {"task": task, "method": method, "seed": seed,
                   "val_accuracy_on_maps": history[-1]["val_accuracy"], **hook.summary()}
        save_json(out["summary"], summary)
        run_.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        run_.log_outputs(outputs_exist(list(out.values())))
