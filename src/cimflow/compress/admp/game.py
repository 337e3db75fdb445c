"""The ADMP game and the distillation fine-tune, as hooks on the shared training loop.

Per step (the loop's own loss is the student's source cross-entropy, hard masks only):

* min player (weights and relaxed hard masks m, the loop's optimizer): adds
  alpha * KD(teacher || student on the target batch, plus cross-entropy on the teacher's
  confident pseudo labels) + gamma * D + rho/2 sum ||m - Z + U||^2, where D, the
  teacher-student output discrepancy on target, is taken *under the adversary's soft masks*;
* max player (the soft masks, their own optimizer, after the loop's step): lowers
  CE(source) - gamma * D with the soft masks on, i.e. finds the channel weighting under
  which the student and teacher disagree most on target while source accuracy holds.

The abstract does not say whether the min player sees the soft masks; here it does in D
(else the adversary could not influence the weights at all, unlike MCD's game which this
follows), while its source and distillation terms use the hard masks alone. Every
``admm_every`` epochs: Z <- top-k(m + U), U <- U + m - Z, rho <- rho * growth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cimflow.compress.admp.masks import MaskedModel
from cimflow.compress.admp.params import GameParams
from cimflow.train import Hook, TrainState


@dataclass(frozen=True)
class GameSettings:
    """The game's hyper-parameters (defaults: the research notes' section 5.2)."""

    temperature: float = 4.0
    alpha: float = 1.0
    gamma: float = 1.0
    confidence: float = 0.9
    rho: float = 1e-3
    rho_growth: float = 1.3
    admm_every: int = 1
    adversary_lr: float = 0.05
    mask_lr: float = 0.1
    """Base learning rate of the relaxed hard masks (the loop's schedule scales it like the
    weights'): they must cross [0, 1] within the game, which the weights' rate is too slow for."""
    clip_norm: float = 5.0
    """Gradient-norm clip of the student's weights: the distillation terms on an unnormalised
    network (LeNet-5 has no BatchNorm) otherwise diverge at learning rates CE alone takes."""


def clip_gradients(model: nn.Module, settings: GameSettings) -> None:
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], settings.clip_norm)


def distillation(student: Tensor, teacher: Tensor, temperature: float, confidence: float) -> Tensor:
    """KL(teacher || student) at ``temperature`` (times T^2), plus cross-entropy on the
    teacher's pseudo labels where its top probability exceeds ``confidence``."""
    kl = F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1),
                  reduction="batchmean") * temperature**2
    top, pseudo = F.softmax(teacher, 1).max(1)
    sure = top > confidence
    return kl + (F.cross_entropy(student[sure], pseudo[sure]) if bool(sure.any()) else kl.new_zeros(()))


def discrepancy(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean L1 distance of the two output distributions: the domain-divergence proxy."""
    return (F.softmax(student, 1) - F.softmax(teacher, 1)).abs().sum(1).mean()


class AdmpHook(Hook):
    """Runs the double-mask game on ``masked`` (the student) against a frozen ``teacher``."""

    def __init__(self, teacher: nn.Module, masked: MaskedModel, settings: GameSettings,
                 proxy_images: Tensor | None = None) -> None:
        """``proxy_images``: preprocessed unlabeled target-validation images, on which each
        period records the label-free proxies (teacher agreement and discrepancy)."""
        self.teacher, self.masked, self.settings = teacher, masked, settings
        self.proxy_images = proxy_images
        self.rho = settings.rho
        self.periods: list[dict[str, float]] = []
        self.snapshots: dict[str, Tensor] = {}
        """Every period's masks after its ADMM step: ``period{k}/{layer}/{hard,soft,target}``."""
        self._teacher_target: Tensor | None = None
        self._labels: Tensor | None = None
        self._sums: dict[str, float] = {}

    def on_train_start(self, state: TrainState) -> None:
        self.teacher.eval().requires_grad_(False)
        self.masked.start()
        masks = list(self.masked.masks.values())
        state.optimizer.add_param_group({"params": [m.hard for m in masks], "weight_decay": 0.0,
                                         "lr": self.settings.mask_lr})
        self.adversary = torch.optim.SGD([m.soft_scores for m in masks], lr=self.settings.adversary_lr)

    def on_epoch_start(self, state: TrainState) -> None:
        self._sums = {"kd": 0.0, "discrepancy": 0.0, "adversary_discrepancy": 0.0, "batches": 0}

    def extra_loss(self, state: TrainState, logits: Tensor, targets: Tensor) -> Tensor:
        if state.target_batch is None:
            raise ValueError("ADMP needs unlabeled target images: train(..., target_images=...)")
        s = self.settings
        with torch.no_grad():
            self._teacher_target = self.teacher(state.target_batch)
        self._labels = targets
        kd = distillation(state.model(state.target_batch), self._teacher_target, s.temperature, s.confidence)
        self.masked.adversarial(True)
        try:
            d = discrepancy(state.model(state.target_batch), self._teacher_target)
        finally:
            self.masked.adversarial(False)
        admm = sum(mask.penalty() for mask in self.masked.masks.values())
        self._sums["kd"] += float(kd.detach())
        self._sums["discrepancy"] += float(d.detach())
        self._sums["batches"] += 1
        return s.alpha * kd + s.gamma * d + 0.5 * self.rho * admm

    def after_backward(self, state: TrainState) -> None:
        clip_gradients(state.model, self.settings)

    def after_step(self, state: TrainState) -> None:
        """The relaxed hard masks back into [0, 1] (the hull of {0, 1}), then the adversary's
        step: soft masks lower CE(source) - gamma * D, hard masks fixed."""
        with torch.no_grad():
            for mask in self.masked.masks.values():
                mask.hard.clamp_(0.0, 1.0)
        self.masked.adversarial(True)
        try:
            source = F.cross_entropy(state.model(state.inputs), self._labels)
            d = discrepancy(state.model(state.target_batch), self._teacher_target)
            self.adversary.zero_grad(set_to_none=True)
            (source - self.settings.gamma * d).backward()
            self.adversary.step()
        finally:
            self.masked.adversarial(False)
        state.optimizer.zero_grad(set_to_none=True)  # the weights' stray gradients from this pass
        self._sums["adversary_discrepancy"] += float(d.detach())

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        batches = max(1, int(self._sums["batches"]))
        masks = self.masked.masks.values()
        row = {
            "epoch": state.epoch + 1,
            "rho": self.rho,
            "mask_distance": float(sum(m.distance() ** 2 for m in masks) ** 0.5),
            "kept_fraction": sum(m.keep for m in masks) / sum(m.channels for m in masks),
            "kd": self._sums["kd"] / batches,
            "discrepancy": self._sums["discrepancy"] / batches,
            "adversary_discrepancy": self._sums["adversary_discrepancy"] / batches,
            "source_val_accuracy": metrics["val_accuracy"],
            **self._proxies(state),
        }
        if (state.epoch + 1) % self.settings.admm_every == 0:
            for mask in masks:
                mask.admm_step()
            self.rho *= self.settings.rho_growth
        self.periods.append(row)
        for name in self.masked.chains:
            mask = self.masked.mask(name)
            for part, values in (("hard", mask.hard), ("soft", mask.soft()), ("target", mask.target)):
                self.snapshots[f"period{len(self.periods)}/{name}/{part}"] = values.detach().cpu().clone()
        metrics.update({k: v for k, v in row.items() if k not in ("epoch", "source_val_accuracy")})

    @torch.no_grad()
    def _proxies(self, state: TrainState) -> dict[str, float]:
        """Teacher agreement and discrepancy of the hard-masked student on target validation."""
        if self.proxy_images is None:
            return {}
        was_training = state.model.training
        state.model.eval()
        student, teacher = [], []
        for batch in self.proxy_images.split(500):
            batch = batch.to(state.device)
            student.append(state.model(batch))
            teacher.append(self.teacher(batch))
        state.model.train(was_training)
        s, t = torch.cat(student), torch.cat(teacher)
        return {"target_val_agreement": float((s.argmax(1) == t.argmax(1)).float().mean()),
                "target_val_discrepancy": float(discrepancy(s, t))}


def settings_from(game: GameParams) -> GameSettings:
    """The game's settings from params.yaml ``admp.<task>.game``."""
    return GameSettings(**game.model_dump(exclude={"epochs", "lr"}))


class DistillHook(Hook):
    """The fine-tune after pruning: the loop's source loss plus alpha * KD on target."""

    def __init__(self, teacher: nn.Module, settings: GameSettings) -> None:
        self.teacher, self.settings = teacher, settings

    def on_train_start(self, state: TrainState) -> None:
        self.teacher.eval().requires_grad_(False)

    def after_backward(self, state: TrainState) -> None:
        clip_gradients(state.model, self.settings)

    def extra_loss(self, state: TrainState, logits: Tensor, targets: Tensor) -> Tensor:
        if state.target_batch is None:
            raise ValueError("distillation on target needs unlabeled target images: train(..., target_images=...)")
        with torch.no_grad():
            teacher = self.teacher(state.target_batch)
        s = self.settings
        return s.alpha * distillation(state.model(state.target_batch), teacher, s.temperature, s.confidence)
