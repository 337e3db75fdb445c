"""The one training loop every method plugs into.

Compression methods do not write loops of their own: they subclass :class:`Hook` and
act at named points (Distiller-style policies). A hook can add loss terms (ADMM's
rho/2 ||W - Z + U||^2), mask gradients after backward (pruning), project weights after
the optimiser step, install per-block quantizers at train start (forward pre-hooks or
parametrizations), or supply its own LR schedule.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cimflow.errors import CimflowError
from cimflow.params.train import TrainParams
from cimflow.preprocess import Preprocessor, augment


class TrainingDiverged(CimflowError):
    """The training loss became NaN or infinite: the run stops instead of handing on a broken model."""


@dataclass
class TrainState:
    """What hooks see: the live objects plus loop counters."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    params: TrainParams
    device: torch.device
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    inputs: torch.Tensor | None = None
    """This step's (preprocessed, augmented) training inputs."""
    target_batch: torch.Tensor | None = None
    """This step's unlabeled target-domain inputs (domain-adaptation tasks only)."""
    extra: dict = field(default_factory=dict)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    """The task kind's base loss, for hooks that run extra forwards (multi-level training)."""

    @property
    def progress(self) -> float:
        """Fraction of all training steps done, 0 at the start, 1 at the end."""
        return min(1.0, self.step / max(1, self.steps_per_epoch * self.params.epochs))


class Hook:
    """Base class: override only the points a method needs."""

    def on_train_start(self, state: TrainState) -> None: ...

    def make_scheduler(self, state: TrainState) -> torch.optim.lr_scheduler.LRScheduler | None:
        return None

    def on_epoch_start(self, state: TrainState) -> None: ...

    def extra_loss(self, state: TrainState, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
        return None

    def after_backward(self, state: TrainState) -> None: ...

    def after_step(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


def select_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed torch and numpy and force deterministic kernels (bit-identical CPU runs).

    On CUDA, determinism is best effort: cuBLAS gets the fixed workspace it needs for
    reproducible GEMMs, and ops without a deterministic CUDA kernel (the backward of
    adaptive average pooling in ResNet-20) warn instead of stopping the run. GPU
    results are therefore repeatable only approximately and never equal CPU bits.
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    cuda = torch.cuda.is_available()
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    torch.backends.cudnn.benchmark = False


def default_scheduler(state: TrainState) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step LR: linear warmup, then cosine, step (x0.1 at 50%/75%) or one-cycle."""
    p = state.params
    total = p.epochs * state.steps_per_epoch
    warm = p.warmup_epochs * state.steps_per_epoch

    def factor(step: int) -> float:
        if p.schedule == "onecycle":
            if step < warm:
                return 0.1 + 0.9 * step / max(warm, 1)
            return max(0.0, (total - step) / max(total - warm, 1))
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total - warm, 1)
        if p.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 0.1 ** (int(progress >= 0.5) + int(progress >= 0.75))

    return torch.optim.lr_scheduler.LambdaLR(state.optimizer, factor)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    prep: Preprocessor,
    batch_size: int,
    device: torch.device,
) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and per-sample predictions on a labelled set."""
    model.eval()
    total_loss, preds = 0.0, []
    for start in range(0, len(labels), batch_size):
        x = prep(images[start : start + batch_size], device)
        y = torch.as_tensor(labels[start : start + batch_size], device=device)
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        preds.append(logits.argmax(1).cpu().numpy())
    pred = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
    return total_loss / max(len(labels), 1), float((pred == labels).mean()), pred


class Objective:
    """What a task kind supplies to the loop: its batches, its base loss, a running train
    score and its validation metrics (classification: cross-entropy and accuracy; super
    resolution: L1 and PSNR, cimflow.sr.objective)."""

    samples: int  # training samples per epoch
    train_metric: str  # name of the per-sample score summed by ``score`` ("accuracy", "psnr")

    def epoch(self, generator: torch.Generator, batch_size: int,
              device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """One epoch of (inputs, targets, unlabeled target-domain inputs or None), drawn from ``generator``."""
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The batch's summed per-sample score (e.g. the number correct)."""
        raise NotImplementedError

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Metrics on the validation split, keys starting with ``val_``."""
        raise NotImplementedError


@dataclass
class Classification(Objective):
    """Labeled images, cross-entropy; optionally unlabeled target-domain images drawn
    beside each batch (domain adaptation), cycling in their own shuffled order."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    prep: Preprocessor
    crop_padding: int
    hflip: bool
    target_images: np.ndarray | None = None
    train_metric: str = "accuracy"

    def __post_init__(self) -> None:
        if self.target_images is not None and len(self.target_images) == 0:
            raise ValueError("target_images is empty: a domain-adaptation run needs unlabeled target images")
        self.samples = len(self.train_labels)

    def epoch(self, generator, batch_size, device):
        order = torch.randperm(self.samples, generator=generator).numpy()
        if self.target_images is not None:
            target_order = torch.randperm(len(self.target_images), generator=generator).numpy()
        for b in range(math.ceil(self.samples / batch_size)):
            idx = np.sort(order[b * batch_size : (b + 1) * batch_size])
            x = augment(self.prep(self.train_images[idx]), generator, self.crop_padding, self.hflip).to(device)
            y = torch.as_tensor(self.train_labels[idx], device=device)
            target = None
            if self.target_images is not None:
                tidx = np.sort(np.take(target_order, range(b * batch_size, b * batch_size + len(idx)), mode="wrap"))
                target = augment(self.prep(self.target_images[tidx]), generator, self.crop_padding,
                                 self.hflip).to(device)
            yield x, y, target

    def loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def score(self, outputs, targets):
        return float((outputs.argmax(1) == targets).sum())

    def validate(self, model, device):
        val_loss, val_acc, _ = evaluate_model(model, self.val_images, self.val_labels, self.prep, 1000, device)
        return {"val_loss": val_loss, "val_accuracy": val_acc}


def sgd(model: nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    """SGD (Nesterov when momentum > 0); weight decay on weights only, not on biases and norms."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=params.lr,
        momentum=params.momentum,
        nesterov=params.momentum > 0,
    )


def train(
    model: nn.Module,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    prep: Preprocessor,
    params: TrainParams,
    seed: int,
    hooks: Sequence[Hook] = (),
    device: torch.device | None = None,
    target_images: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """Train a classifier in place with SGD+Nesterov; returns one metrics dict per epoch.

    Each epoch ends with the loss and accuracy on the validation images: every
    decision made during or about training sees those, never the test split.
    ``target_images`` (unlabeled, domain-adaptation tasks): each step also draws a batch
    of them, preprocessed and augmented like the source batch, as ``state.target_batch``
    for the hooks.
    """
    objective = Classification(train_images, train_labels, val_images, val_labels, prep, params.crop_padding,
                               params.hflip, target_images)
    return fit(model, objective, params, seed, hooks, device)


def fit(
    model: nn.Module,
    objective: Objective,
    params: Any,
    seed: int,
    hooks: Sequence[Hook] = (),
    device: torch.device | None = None,
    make_optimizer: Callable[[nn.Module, Any], torch.optim.Optimizer] = sgd,
) -> list[dict[str, float]]:
    """The loop itself, for any task kind's ``objective``; ``params`` needs ``epochs``,
    ``batch_size``, ``lr``, ``schedule`` and ``warmup_epochs``."""
    device = device or select_device()
    model.to(device)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(objective.samples / params.batch_size)
    optimizer = make_optimizer(model, params)
    state = TrainState(model, optimizer, params, device, steps_per_epoch, loss_fn=objective.loss)
    for hook in hooks:
        hook.on_train_start(state)
    custom = [s for s in (h.make_scheduler(state) for h in hooks) if s is not None]
    state.scheduler = custom[0] if custom else default_scheduler(state)

    history = []
    for epoch in range(params.epochs):
        state.epoch = epoch
        for hook in hooks:
            hook.on_epoch_start(state)
        model.train()
        started, seen, loss_sum, score = time.perf_counter(), 0, 0.0, 0.0
        batches = objective.epoch(gen, params.batch_size, device)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{params.epochs}", leave=False,
                   disable=None)
        for b, (x, y, target) in enumerate(bar):
            state.inputs, state.target_batch = x, target
            outputs = model(x)
            loss = objective.loss(outputs, y)
            for hook in hooks:
                term = hook.extra_loss(state, outputs, y)
                if term is not None:
                    loss = loss + term
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"training diverged: loss {value} at epoch {epoch + 1}, batch {b + 1} (learning rate "
                    f"{optimizer.param_groups[0]['lr']:.3g}); lower train.<task>.lr or lengthen warmup_epochs"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for hook in hooks:
                hook.after_backward(state)
            optimizer.step()
            state.scheduler.step()
            for hook in hooks:
                hook.after_step(state)
            state.step += 1
            seen += len(x)
            loss_sum += value * len(x)
            score += objective.score(outputs.detach(), y)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        validation = objective.validate(model, device)
        metrics = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / seen,
            f"train_{objective.train_metric}": score / seen,
            **validation,
            "seconds": time.perf_counter() - started,
        }
        for hook in hooks:
            hook.on_epoch_end(state, metrics)
        history.append(metrics)
        shown = " ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in validation.items())
        print(
            f"epoch {epoch + 1}/{params.epochs}: loss {metrics['train_loss']:.4f} "
            f"train {metrics[f'train_{objective.train_metric}']:.4f} val {shown} ({metrics['seconds']:.1f}s)",
            file=sys.stderr,
            flush=True,
        )
    for hook in hooks:
        hook.on_train_end(state)
    return history
