"""Stages of the domain-adaptation methods (ADMP and its baselines, cimflow.methods):
`dann_train` trains the unpruned UDA teacher from scratch; `admp_prune` and
`channel_prune` prune a trained model's channels away and write the smaller network.

Every stage reads the labeled source train/validation splits and the unlabeled target
train/validation splits (prepare_target), never a target label. The pruned models carry
their layer widths in the model artifact, so export, evaluation and the CiM mapping see
the genuinely smaller layers. Artifacts: the model, the per-epoch history, and for the
pruned ones the channel masks (each layer's kept channels; for ADMP also every period's
relaxed hard, soft and binary target masks) and, for ADMP, one row per game period.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import save_table, save_tensors
from cimflow.compress.admp import method as procedures
from cimflow.evaluate import count_macs, count_parameters
from cimflow.methods import METHODS
from cimflow.modelio import ModelSpec, load_model, save_model
from cimflow.preprocess import Preprocessor
from cimflow.stages.common import load_split, outputs_exist, setup_torch, stage_params
from cimflow.train import seed_everything, select_device

PRUNERS = {"admp": procedures.admp, "adapt_then_prune": procedures.adapt_then_prune,
           "prune_then_adapt": procedures.prune_then_adapt}


def _data(task: str, method: str, prep: Preprocessor | None, input_size: int) -> tuple[procedures.DomainData, list]:
    inputs = [layout.path(p, task=task) for p in METHODS[method].data]
    source_train, source_val, target_train, target_val = (load_split(p) for p in inputs)
    prep = prep or Preprocessor.fit(source_train.images, input_size)
    return procedures.DomainData(source_train, source_val, target_train, target_val, prep, select_device()), inputs


def _work(model, spec: ModelSpec) -> dict[str, int]:
    shape = (spec.in_channels, spec.prep.input_size, spec.prep.input_size)
    return {"parameters": count_parameters(model)[0], "macs": count_macs(model, shape)}


def run(stage: str, task: str, method: str, seed: int, params_file: Path) -> None:
    params, values = stage_params(stage, params_file, task=task)
    setup_torch(params)
    seed_everything(seed)
    base, cfg, entry = params.train[task], params.admp[task], METHODS[method]
    out = {Path(p).stem: layout.path(p, task=task, seed=seed, method=method) for p in entry.outputs}
    if stage == "dann_train":
        data, inputs = _data(task, method, None, base.input_size)
        spec = ModelSpec(base.model.to_ref(), data.source_train.images.shape[1],
                         len(data.source_train.class_names), data.prep, data.source_train.class_names)
        model = spec.build()
    else:
        source = layout.path(layout.MODEL, task=task, seed=seed, method=entry.source)
        start, spec = load_model(source)
        data, inputs = _data(task, method, spec.prep, base.input_size)
        inputs.append(source)
    with tracking.stage_run(stage, values, inputs, task=task, method=method, seed=seed) as run_:
        if stage == "dann_train":
            history = procedures.train_teacher(model, data, base, cfg, seed)
        else:
            before = _work(start, spec)
            result = PRUNERS[method](start, data, base, cfg, seed)
            model, history = result.model.cpu(), result.history
            spec = spec.shrunk(model)
            save_tensors(out["channel_masks"], procedures.mask_arrays(result), {"ratio": str(cfg.ratio)})
            if "periods" in out:
                save_table(out["periods"], pd.DataFrame(result.periods).assign(ratio=cfg.ratio))
            after = _work(model, spec)
            run_.log_metrics({"parameters": after["parameters"], "macs": after["macs"],
                              "parameter_reduction": before["parameters"] / after["parameters"],
                              "mac_reduction": before["macs"] / after["macs"]})
        for step, row in enumerate(history, 1):
            run_.log_metrics({k: v for k, v in row.items() if isinstance(v, float | int) and k != "epoch"}, step=step)
        save_model(out["model"], model.cpu(), spec)
        # Wall-clock seconds stay out of the artifact so reruns are byte-identical.
        save_table(out["history"], pd.DataFrame(history).drop(columns=["seconds"]))
        run_.log_metrics({"train_seconds": sum(r["seconds"] for r in history),
                          "val_accuracy": history[-1]["val_accuracy"]})
        run_.log_outputs(outputs_exist(list(out.values())))
