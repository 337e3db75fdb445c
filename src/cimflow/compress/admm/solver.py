"""Progressive ADMM pruning and ADMM quantization through the shared training loop.

Per constrained layer, ADMM solves min f(W) s.t. W = Z, Z in S with the scaled
augmented Lagrangian f(W) + rho/2 ||W - Z + U||^2 (arXiv 1812.11677, 1903.09769).
A *period* trains W with that penalty (one ``train`` call, so the LR schedule restarts
each period), then sets Z = proj_S(W + U), U = U + W - Z and rho *= rho_growth.
Growing rho drives W onto S; a hard projection at the end of each stage makes the
model feasible and masked retraining recovers the accuracy.

Pruning runs in progressive steps of rising ratios: each step starts from the previous
hard-pruned model and searches only among its surviving weights. Quantization keeps
0 for pruned weights and snaps the rest to {±1..±M}·q, then retrains while freezing
snapped weights progressively, nearest to their level first.

Masks are kept explicitly rather than through torch.nn.utils.prune's
``weight_orig * weight_mask`` reparametrisation: a frozen quantized weight is held at a
nonzero level, which a multiplicative mask cannot express, and a plain ``weight``
keeps the model's state_dict the one every other stage saves, loads and exports.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from cimflow.compress.admm.projections import (
    Granularity,
    dequantize,
    layer_codes,
    prune_mask,
    prune_projection,
    quantize,
    quantize_projection,
    top_k_mask,
)
from cimflow.compress.admm.params import AdmmPruneParams, AdmmQuantizeParams, AdmmSchedule, Retrain
from cimflow.errors import ParamsError
from cimflow.params.train import TrainParams
from cimflow.data.split import Split
from cimflow.preprocess import Preprocessor
from cimflow.train import Hook, TrainState, evaluate_model, select_device, train


Row = dict[str, float | int | str]


@dataclass
class PruneResult:
    """Per-layer keep masks (bool, True = kept) and one table row per layer and event.

    Columns: step, phase ("admm" after each period's Z/U update, "hard_prune" or
    "prune" after the projection, "retrain"), period (0 outside ADMM), layer,
    target_ratio, nonzeros, total, rho (NaN outside ADMM), val_accuracy,
    primal_residual (||W - Z|| / ||W||; for a projection, the share it removed),
    epochs (cumulative training epochs).
    """

    masks: dict[str, np.ndarray]
    rows: list[Row]


@dataclass
class QuantizeResult:
    """Per-layer int8 codes (0 = pruned) and float32 scales: weight = code * scale, exactly.

    Rows as in :class:`PruneResult` with bits and frozen_fraction instead of
    target_ratio; phase is "admm" (step 0) or "freeze" (step = freeze round), and a
    freeze row's primal_residual is the distance of W to its levels.
    """

    codes: dict[str, np.ndarray]
    scales: dict[str, float]
    rows: list[Row]


def constrained_layers(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Conv2d | nn.Linear]:
    """The named Conv2d/Linear modules, or a ParamsError listing the valid names."""
    modules = dict(model.named_modules())
    valid = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
    layers = {}
    for name in names:
        if name not in valid:
            raise ParamsError(
                f"layer {name!r} is not a Conv2d or Linear of {type(model).__name__} (layers: {', '.join(valid)})"
            )
        layers[name] = modules[name]
    return layers


def count_weights(model: nn.Module) -> tuple[int, int]:
    """(nonzero, total) over every Conv2d/Linear weight: the denominator of the compression rate."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(int(torch.count_nonzero(w)) for w in weights), sum(w.numel() for w in weights)


@dataclass
class PhaseTrainer:
    """Runs training phases on fixed data: each call restarts the LR schedule with a fresh seed."""

    model: nn.Module
    train_split: Split
    val_split: Split
    prep: Preprocessor
    base: TrainParams
    seed: int
    device: torch.device | None = None
    epochs_done: int = field(default=0, init=False)
    _calls: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.device = self.device or select_device()
        self.model.to(self.device)

    def train(self, epochs: int, lr: float, hooks: Sequence[Hook]) -> float:
        """Train ``epochs`` epochs at peak ``lr`` (no warmup); return the final validation accuracy."""
        params = self.base.model_copy(update={"epochs": epochs, "lr": lr, "warmup_epochs": 0})
        history = train(self.model, self.train_split.images, self.train_split.labels, self.val_split.images,
                        self.val_split.labels, self.prep, params, self.seed + self._calls, hooks, self.device)
        self._calls += 1
        self.epochs_done += epochs
        return history[-1]["val_accuracy"]

    def evaluate(self) -> float:
        _, accuracy, _ = evaluate_model(self.model, self.val_split.images, self.val_split.labels, self.prep,
                                        1000, self.device)
        return accuracy


class HoldWeights(Hook):
    """Keep every entry outside ``trainable`` at the value it had when training started.

    Zeroing their gradients is the masked retraining of the papers; writing the held
    values back after each step makes it exact, because weight decay and momentum
    would still move them (a frozen quantized weight is not zero). ``biases`` (layer ->
    bool per output) holds biases the same way: a pruned filter's bias stays 0, so its
    output channel is exactly zero and can be removed.
    """

    def __init__(self, layers: Mapping[str, nn.Module], trainable: Mapping[str, Tensor],
                 biases: Mapping[str, Tensor] | None = None) -> None:
        self.layers = dict(layers)
        self.masks = {(n, "weight"): m for n, m in trainable.items()}
        self.masks |= {(n, "bias"): m for n, m in (biases or {}).items()}
        self.held: dict[tuple[str, str], Tensor] = {}

    def _entries(self) -> list[tuple[tuple[str, str], Tensor, Tensor]]:
        return [(key, getattr(self.layers[key[0]], key[1]), mask) for key, mask in self.masks.items()]

    def on_train_start(self, state: TrainState) -> None:
        for key, tensor, mask in self._entries():
            self.masks[key] = mask.to(tensor.device)
            self.held[key] = tensor.detach().clone()

    def after_backward(self, state: TrainState) -> None:
        for _, tensor, mask in self._entries():
            if tensor.grad is not None:
                tensor.grad.mul_(mask)

    @torch.no_grad()
    def after_step(self, state: TrainState) -> None:
        for key, tensor, mask in self._entries():
            tensor.copy_(torch.where(mask, tensor, self.held[key]))


def filter_biases(layers: Mapping[str, nn.Module], masks: Mapping[str, Tensor],
                  granularity: Granularity) -> dict[str, Tensor]:
    """Per-output keep masks of the biases to hold: filter pruning drops a filter's bias with it."""
    if granularity != "filter":
        return {}
    return {n: masks[n].flatten(1).any(dim=1) for n, m in layers.items() if m.bias is not None}


Projection = Callable[[Tensor], Tensor]


class Admm(Hook):
    """Scaled-form ADMM state (Z, U, rho) per layer; as a hook it adds the W-step penalty."""

    def __init__(self, layers: Mapping[str, nn.Module], projections: Mapping[str, Projection], rho: float,
                 rho_growth: float) -> None:
        self.layers = dict(layers)
        self.projections = dict(projections)
        self.rho = rho
        self.rho_growth = rho_growth
        with torch.no_grad():
            self.z = {n: self.projections[n](m.weight.detach()) for n, m in self.layers.items()}
        self.u = {n: torch.zeros_like(z) for n, z in self.z.items()}

    def on_train_start(self, state: TrainState) -> None:
        for name, layer in self.layers.items():
            self.z[name] = self.z[name].to(layer.weight.device)
            self.u[name] = self.u[name].to(layer.weight.device)

    def extra_loss(self, state: TrainState, logits: Tensor, targets: Tensor) -> Tensor:
        return sum(0.5 * self.rho * (m.weight - self.z[n] + self.u[n]).pow(2).sum() for n, m in self.layers.items())

    @torch.no_grad()
    def update(self) -> dict[str, float]:
        """Z = proj(W + U), U += W - Z, rho *= growth; returns ||W - Z|| / ||W|| per layer."""
        residuals = {}
        for name, layer in self.layers.items():
            w = layer.weight.detach()
            self.z[name] = self.projections[name](w + self.u[name])
            self.u[name] += w - self.z[name]
            residuals[name] = _relative_norm(w - self.z[name], w)
        self.rho *= self.rho_growth
        return residuals


@dataclass(frozen=True)
class PeriodRecord:
    """What one ADMM period leaves for the table."""

    period: int
    rho: float
    val_accuracy: float
    residuals: dict[str, float]
    epochs_done: int


def run_admm(trainer: PhaseTrainer, layers: Mapping[str, nn.Module], projections: Mapping[str, Projection],
             schedule: AdmmSchedule, trainable: Mapping[str, Tensor], label: str,
             biases: Mapping[str, Tensor] | None = None) -> list[PeriodRecord]:
    """One ADMM stage; entries outside ``trainable`` (earlier prunings) and the biases
    ``biases`` excludes stay fixed throughout."""
    admm = Admm(layers, projections, schedule.rho, schedule.rho_growth)
    records = []
    for period in range(1, schedule.periods + 1):
        rho = admm.rho
        accuracy = trainer.train(schedule.period_epochs, schedule.lr, [admm, HoldWeights(layers, trainable, biases)])
        residuals = admm.update()
        records.append(PeriodRecord(period, rho, accuracy, residuals, trainer.epochs_done))
        gaps = " ".join(f"{n} {r:.3g}" for n, r in residuals.items())
        print(f"{label} period {period}/{schedule.periods}: rho {rho:.3g} val {accuracy:.4f} "
              f"||W-Z||/||W|| {gaps}", file=sys.stderr, flush=True)
    return records


def _relative_norm(difference: Tensor, reference: Tensor) -> float:
    return float(difference.norm() / reference.norm().clamp_min(torch.finfo(reference.dtype).tiny))


def keep_all(layers: Mapping[str, nn.Module]) -> dict[str, Tensor]:
    """Masks that keep every weight: the start of a pruning run."""
    return {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in layers.items()}


def _prune_row(step: int, phase: str, period: int, name: str, layer: nn.Module, ratio: float, rho: float,
               accuracy: float, residual: float, epochs_done: int) -> Row:
    return {"step": step, "phase": phase, "period": period, "layer": name, "target_ratio": ratio,
            "nonzeros": int(torch.count_nonzero(layer.weight)), "total": layer.weight.numel(), "rho": rho,
            "val_accuracy": accuracy, "primal_residual": residual, "epochs": epochs_done}


def prune_and_retrain(trainer: PhaseTrainer, layers: Mapping[str, nn.Module], allowed: dict[str, Tensor],
                      ratios: Mapping[str, float], granularity: Granularity, retrain: Retrain, step: int,
                      prune_phase: str) -> tuple[dict[str, Tensor], list[Row]]:
    """Hard-prune each layer to its ratio by magnitude among ``allowed``, then retrain with the masks.

    Returns the new masks and the table rows; the prune rows' residual is
    ||W - proj(W)|| / ||W||, the part of the weights the projection removed.
    """
    masks, removed = {}, {}
    with torch.no_grad():
        for name, layer in layers.items():
            w = layer.weight
            masks[name] = prune_mask(w, ratios[name], granularity, allowed[name])
            removed[name] = _relative_norm(torch.where(masks[name], 0.0, w), w)
            w.masked_fill_(~masks[name], 0.0)
        biases = filter_biases(layers, masks, granularity)
        for name, keep in biases.items():
            layers[name].bias.masked_fill_(~keep, 0.0)
    accuracy = trainer.evaluate()
    rows = [_prune_row(step, prune_phase, 0, n, m, ratios[n], math.nan, accuracy, removed[n], trainer.epochs_done)
            for n, m in layers.items()]
    print(f"step {step} {prune_phase}: val {accuracy:.4f} {_rate_text(trainer.model)}", file=sys.stderr, flush=True)
    accuracy = trainer.train(retrain.epochs, retrain.lr, [HoldWeights(layers, masks, biases)])
    rows += [_prune_row(step, "retrain", 0, n, m, ratios[n], math.nan, accuracy, 0.0, trainer.epochs_done)
             for n, m in layers.items()]
    print(f"step {step} retrain: val {accuracy:.4f}", file=sys.stderr, flush=True)
    return masks, rows


def _rate_text(model: nn.Module) -> str:
    nonzero, total = count_weights(model)
    return f"conv+fc weights {nonzero}/{total} nonzero ({total / max(nonzero, 1):.1f}x)"


def admm_prune(model: nn.Module, train_split: Split, val_split: Split, prep: Preprocessor, base: TrainParams,
               params: AdmmPruneParams, seed: int, device: torch.device | None = None) -> PruneResult:
    """Progressive ADMM pruning of ``model`` in place; ``base`` supplies batch, momentum, decay, schedule."""
    trainer = PhaseTrainer(model, train_split, val_split, prep, base, seed, device)
    layers = constrained_layers(model, params.steps[0].ratios)
    allowed, rows = keep_all(layers), []
    for step, targets in enumerate(params.steps, start=1):
        projections = {n: functools.partial(prune_projection, ratio=targets.ratios[n],
                                            granularity=params.granularity, allowed=allowed[n]) for n in layers}
        label = f"admm prune step {step}/{len(params.steps)}"
        biases = filter_biases(layers, allowed, params.granularity)
        for record in run_admm(trainer, layers, projections, params.admm, allowed, label, biases):
            rows += [_prune_row(step, "admm", record.period, n, m, targets.ratios[n], record.rho,
                                record.val_accuracy, record.residuals[n], record.epochs_done)
                     for n, m in layers.items()]
        allowed, step_rows = prune_and_retrain(trainer, layers, allowed, targets.ratios, params.granularity,
                                               params.retrain, step, "hard_prune")
        rows += step_rows
    return PruneResult({n: m.cpu().numpy() for n, m in allowed.items()}, rows)


def _quantize_row(phase: str, step: int, period: int, name: str, layer: nn.Module, bits: int, frozen: float,
                  rho: float, accuracy: float, residual: float, epochs_done: int) -> Row:
    return {"step": step, "phase": phase, "period": period, "layer": name, "bits": bits, "frozen_fraction": frozen,
            "nonzeros": int(torch.count_nonzero(layer.weight)), "total": layer.weight.numel(), "rho": rho,
            "val_accuracy": accuracy, "primal_residual": residual, "epochs": epochs_done}


def _freeze_nearest(weight: Tensor, snapped: Tensor, allowed: Tensor, frozen: Tensor, fraction: float) -> Tensor:
    """Grow ``frozen`` to ``fraction`` of the allowed entries, nearest to their level first; snap them."""
    target = math.floor(fraction * int(allowed.sum()) + 0.5)
    free = allowed & ~frozen
    closeness = torch.where(free, -(weight - snapped).abs(), -math.inf)
    newly = top_k_mask(closeness, max(target - int(frozen.sum()), 0))
    weight.copy_(torch.where(newly, snapped, weight))
    return frozen | newly


def admm_quantize(model: nn.Module, train_split: Split, val_split: Split, prep: Preprocessor, base: TrainParams,
                  params: AdmmQuantizeParams, seed: int, masks: Mapping[str, np.ndarray] | None = None,
                  device: torch.device | None = None) -> QuantizeResult:
    """ADMM quantization of ``model`` in place, then progressive freezing onto the levels.

    ``masks`` (from pruning) mark the kept weights; the others are held at 0, the code
    reserved for them (a layer without a mask keeps all its weights). Each layer's
    scale is fitted once after ADMM and stays fixed so frozen weights remain on the
    level set.
    """
    trainer = PhaseTrainer(model, train_split, val_split, prep, base, seed, device)
    layers = constrained_layers(model, params.bits)
    allowed = _masks_for(layers, masks or {})
    with torch.no_grad():
        for name, layer in layers.items():
            layer.weight.masked_fill_(~allowed[name], 0.0)
    projections = {n: functools.partial(quantize_projection, bits=params.bits[n], allowed=allowed[n])
                   for n in layers}
    rows = []
    for record in run_admm(trainer, layers, projections, params.admm, allowed, "admm quantize"):
        rows += [_quantize_row("admm", 0, record.period, n, m, params.bits[n], 0.0, record.rho,
                               record.val_accuracy, record.residuals[n], record.epochs_done)
                 for n, m in layers.items()]
    with torch.no_grad():
        scales = {n: quantize(m.weight, params.bits[n], allowed[n])[1] for n, m in layers.items()}
    frozen = {n: torch.zeros_like(a) for n, a in allowed.items()}
    for round_, fraction in enumerate(params.freeze.fractions, start=1):
        with torch.no_grad():
            for name, layer in layers.items():
                snapped = _snap(layer.weight, scales[name], params.bits[name], allowed[name])
                frozen[name] = _freeze_nearest(layer.weight, snapped, allowed[name], frozen[name], fraction)
        trainable = {n: allowed[n] & ~frozen[n] for n in layers}
        accuracy = trainer.train(params.freeze.epochs, params.freeze.lr, [HoldWeights(layers, trainable)])
        for name, layer in layers.items():
            w = layer.weight.detach()
            gap = _relative_norm(w - _snap(w, scales[name], params.bits[name], allowed[name]), w)
            share = int(frozen[name].sum()) / max(int(allowed[name].sum()), 1)
            rows.append(_quantize_row("freeze", round_, 0, name, layer, params.bits[name], share, math.nan,
                                      accuracy, gap, trainer.epochs_done))
        print(f"quantize freeze round {round_}/{len(params.freeze.fractions)} ({fraction:.0%} frozen): "
              f"val {accuracy:.4f}", file=sys.stderr, flush=True)
    codes = {n: layer_codes(m.weight.detach(), scales[n], params.bits[n], allowed[n]).cpu().numpy()
             for n, m in layers.items()}
    return QuantizeResult(codes, scales, rows)


def _snap(weight: Tensor, scale: float, bits: int, allowed: Tensor) -> Tensor:
    return dequantize(layer_codes(weight, scale, bits, allowed), scale, weight.dtype)


def _masks_for(layers: Mapping[str, nn.Module], masks: Mapping[str, np.ndarray]) -> dict[str, Tensor]:
    allowed = keep_all(layers)
    for name, layer in layers.items():
        if name in masks:
            if masks[name].shape != tuple(layer.weight.shape):
                raise ParamsError(f"mask for layer {name!r} has shape {masks[name].shape}, "
                                  f"the weight {tuple(layer.weight.shape)}")
            allowed[name] = torch.as_tensor(masks[name], dtype=torch.bool, device=layer.weight.device)
    return allowed
