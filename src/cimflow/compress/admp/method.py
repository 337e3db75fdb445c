"""ADMP and its baselines as whole procedures, each one call from a stage.

Every procedure trains through the shared loop (cimflow.train) on the labeled source
split, draws unlabeled target batches where the method adapts, and checks itself on the
source validation split only: nothing here can read a target label.

* :func:`train_teacher`: the unpruned UDA teacher (DANN).
* :func:`admp`: the double-mask game from the teacher, hard masks to their binary ADMM
  targets, the channels removed for real, then a distillation fine-tune.
* :func:`adapt_then_prune`: L1 channel pruning of the teacher, then the same distillation
  fine-tune for the ADMP student's whole budget.
* :func:`prune_then_adapt`: L1 channel pruning of the source-only model, then DANN for
  the same budget.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from cimflow.compress.admp.dann import DannHook
from cimflow.compress.admp.game import AdmpHook, DistillHook, settings_from
from cimflow.compress.admp.masks import MaskedModel
from cimflow.compress.admp.params import AdmpTaskParams
from cimflow.data.split import Split
from cimflow.params.train import TrainParams
from cimflow.preprocess import Preprocessor
from cimflow.shrink import channel_chains, shrink
from cimflow.train import train


@dataclass
class Pruned:
    """A physically shrunk model and what its procedure recorded."""

    model: nn.Module
    keep: dict[str, Tensor]
    history: list[dict[str, float]]
    periods: list[dict[str, float]] = field(default_factory=list)
    snapshots: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class DomainData:
    """What a domain-adaptation procedure may see: labeled source train and validation,
    unlabeled target train and validation (labels all UNLABELED)."""

    source_train: Split
    source_val: Split
    target_train: Split
    target_val: Split
    prep: Preprocessor
    device: torch.device


def _recipe(base: TrainParams, epochs: int, lr: float) -> TrainParams:
    """The task's recipe for a phase that starts from a trained model: no warm-up."""
    return base.model_copy(update={"epochs": epochs, "lr": lr, "warmup_epochs": 0})


def _fit(model: nn.Module, data: DomainData, recipe: TrainParams, seed: int, hooks: list, phase: str,
         after: int = 0) -> list[dict[str, float]]:
    """One phase through the shared loop, with unlabeled target batches; its epochs
    numbered on from ``after``."""
    history = train(model, data.source_train.images, data.source_train.labels, data.source_val.images,
                    data.source_val.labels, data.prep, recipe, seed, hooks, data.device,
                    data.target_train.images)
    return [{**row, "phase": phase, "epoch": row["epoch"] + after} for row in history]


def l1_keep(model: nn.Module, ratio: float) -> dict[str, Tensor]:
    """Per prunable layer, the channels with the largest filter L1 norms (the classic
    channel-pruning criterion, Li et al. 2017), ``ratio`` of them removed."""
    masked = MaskedModel(model, channel_chains(model), ratio)
    masked.start()
    keep = masked.keep()
    masked.remove()
    return keep


def train_teacher(model: nn.Module, data: DomainData, base: TrainParams, cfg: AdmpTaskParams,
                  seed: int) -> list[dict[str, float]]:
    return _fit(model, data, base, seed, [DannHook(cfg.dann.weight, cfg.dann.hidden)], "dann")


def admp(teacher: nn.Module, data: DomainData, base: TrainParams, cfg: AdmpTaskParams, seed: int) -> Pruned:
    settings = settings_from(cfg.game)
    teacher.to(data.device)
    student = copy.deepcopy(teacher).requires_grad_(True)  # the teacher may already be frozen
    masked = MaskedModel(student, channel_chains(student), cfg.ratio)
    hook = AdmpHook(teacher, masked, settings, data.prep(data.target_val.images))
    history = _fit(student, data, _recipe(base, cfg.game.epochs, cfg.game.lr), seed, [hook], "game")
    for mask in masked.masks.values():
        mask.harden()
    keep = masked.keep()
    masked.remove()
    small = shrink(student, keep)
    history += _fit(small, data, _recipe(base, cfg.finetune.epochs, cfg.finetune.lr), seed,
                    [DistillHook(teacher, settings)], "finetune", after=cfg.game.epochs)
    return Pruned(small, keep, history, hook.periods, hook.snapshots)


def budget(cfg: AdmpTaskParams) -> int:
    """Epochs every pruned model trains after its starting point (the ADMP student's total)."""
    return cfg.game.epochs + cfg.finetune.epochs


def adapt_then_prune(teacher: nn.Module, data: DomainData, base: TrainParams, cfg: AdmpTaskParams,
                     seed: int) -> Pruned:
    teacher.to(data.device)
    keep = l1_keep(teacher, cfg.ratio)
    small = shrink(teacher, keep).requires_grad_(True)
    hook = DistillHook(teacher, settings_from(cfg.game))
    history = _fit(small, data, _recipe(base, budget(cfg), cfg.baseline_lr), seed, [hook], "finetune")
    return Pruned(small, keep, history)


def prune_then_adapt(source_only: nn.Module, data: DomainData, base: TrainParams, cfg: AdmpTaskParams,
                     seed: int) -> Pruned:
    keep = l1_keep(source_only, cfg.ratio)
    small = shrink(source_only, keep)
    hook = DannHook(cfg.dann.weight, cfg.dann.hidden)
    history = _fit(small, data, _recipe(base, budget(cfg), cfg.baseline_lr), seed, [hook], "dann")
    return Pruned(small, keep, history)


def mask_arrays(result: Pruned) -> dict[str, np.ndarray]:
    """The channel-masks artifact: each layer's final kept channels (``{layer}/kept``, 0/1)
    and, for ADMP, every period's relaxed hard, soft and binary target masks."""
    kept = {f"{layer}/kept": mask.to(torch.uint8).cpu().numpy() for layer, mask in result.keep.items()}
    return kept | {name: values.numpy() for name, values in result.snapshots.items()}
