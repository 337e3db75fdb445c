"""Feature Regularization as one procedure: attach the sparsifier at the given levels,
fine-tune the dense network with the sandwich and the feature regularizer, then set each
level's thresholds on the validation images. The stage (``featreg_train``, and its
structured baseline ``sr_channel``) and the single-level comparison both run it."""

from __future__ import annotations

import torch
from torch import nn

from cimflow.compress.featreg.hook import FeatRegHook
from cimflow.compress.featreg.params import FeatRegParams
from cimflow.compress.featreg.sparsify import Sparsifier, calibrate, rank_channels
from cimflow.params.train import SrTrainParams
from cimflow.sr import data as srdata
from cimflow.sr.inference import y_tensor
from cimflow.sr.objective import SuperResolution, adam
from cimflow.train import fit

CALIBRATION_ENTRIES = 200_000  # per validation image and layer, when thresholds are calibrated
RANKING_PATCHES = 512  # training patches that rank channels for the structured baseline


def finetune(model: nn.Module, train: srdata.SrSet, val: srdata.SrSet, recipe: SrTrainParams, fr: FeatRegParams,
             mode: str, levels: list[float], seed: int,
             device: torch.device | None = None) -> tuple[Sparsifier, list[dict]]:
    """The sparsifier (still attached, thresholds set, level None: dense) and the per-epoch
    history; ``model`` is fine-tuned in place and left on the CPU."""
    sparsifier = Sparsifier(model, mode, levels, fr.momentum)
    if mode == "channel":
        rank_channels(model, sparsifier, srdata.calibration_patches(train, RANKING_PATCHES, seed))
    steps = recipe.model_copy(update={"epochs": fr.epochs, "lr": fr.lr, "warmup_epochs": 0})
    objective = SuperResolution(train, val, recipe.patch_size, recipe.patches_per_epoch)
    history = fit(model, objective, steps, seed, [FeatRegHook(sparsifier, fr.weight, seed)], device=device,
                  make_optimizer=adam)
    model.cpu()
    calibrate(model, sparsifier, [y_tensor(lr) for lr in val.lr], CALIBRATION_ENTRIES, seed)
    return sparsifier, history
