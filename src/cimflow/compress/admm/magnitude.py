"""Magnitude-pruning baselines held to ADMM's ratios and epoch budget.

Both read the same :class:`AdmmPruneParams` as ADMM so a comparison cannot drift:
*one-shot* prunes straight to the last step's ratios and retrains for ADMM's whole
epoch budget; *iterative* prunes through the same steps, retraining each for as many
epochs as an ADMM step takes (its periods plus its retraining). Retraining is ADMM's
masked retraining (same learning rate and masks), only longer: the baseline gets the
epochs ADMM spends on its penalised W-steps.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from cimflow.compress.admm.solver import (
    PhaseTrainer,
    PruneResult,
    constrained_layers,
    keep_all,
    prune_and_retrain,
)
from cimflow.compress.admm.params import AdmmPruneParams, Retrain
from cimflow.params.train import TrainParams
from cimflow.data.split import Split
from cimflow.preprocess import Preprocessor

MagnitudeSchedule = Literal["one_shot", "iterative"]


def admm_epochs_per_step(params: AdmmPruneParams) -> int:
    """Training epochs one progressive ADMM step spends: its periods plus its retraining."""
    return params.admm.periods * params.admm.period_epochs + params.retrain.epochs


def magnitude_prune(model: nn.Module, train_split: Split, val_split: Split, prep: Preprocessor, base: TrainParams,
                    params: AdmmPruneParams, seed: int, schedule: MagnitudeSchedule,
                    device: torch.device | None = None) -> PruneResult:
    """Prune ``model`` in place by weight magnitude with masked retraining; same table as ADMM."""
    trainer = PhaseTrainer(model, train_split, val_split, prep, base, seed, device)
    layers = constrained_layers(model, params.steps[0].ratios)
    per_step = admm_epochs_per_step(params)
    if schedule == "iterative":
        steps, retrain = params.steps, Retrain(epochs=per_step, lr=params.retrain.lr)
    else:
        steps, retrain = params.steps[-1:], Retrain(epochs=per_step * len(params.steps), lr=params.retrain.lr)
    allowed, rows = keep_all(layers), []
    for step, targets in enumerate(steps, start=1):
        allowed, step_rows = prune_and_retrain(trainer, layers, allowed, targets.ratios, params.granularity,
                                               retrain, step, "prune")
        rows += step_rows
    return PruneResult({n: m.cpu().numpy() for n, m in allowed.items()}, rows)
