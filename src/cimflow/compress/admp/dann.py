"""DANN (Ganin et al., JMLR 2016) as a hook on the shared training loop: the UDA teacher.

The features are the input of the network's last Linear layer (its classifier). A small
domain classifier behind a gradient-reversal layer learns to tell source from target
features while the reversed gradient teaches the feature extractor to make them
indistinguishable. The reversal strength follows DANN's ramp over training progress.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cimflow.compress.admp.reversal import dann_strength, reverse_gradient
from cimflow.train import Hook, TrainState


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The network's last Linear module (its classifier), whose input DANN aligns."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear classifier whose input features DANN could align")
    return linears[-1]


class DannHook(Hook):
    """Adds ``weight`` x the domain classifier's loss on source and target features.

    The default 0.3 is what LeNet-5 on digits_shift trained stably with at lr 0.02 (at 1.0
    one seed in three diverged); a task's own value belongs in its params."""

    def __init__(self, weight: float = 0.3, hidden: int = 256) -> None:
        self.weight, self.hidden = weight, hidden
        self.discriminator: nn.Module | None = None
        self._features: Tensor | None = None
        self._sums = {"domain_loss": 0.0, "domain_accuracy": 0.0, "batches": 0}

    def on_train_start(self, state: TrainState) -> None:
        classifier = classifier_layer(state.model)
        self._handle = classifier.register_forward_pre_hook(self._capture)
        self.discriminator = nn.Sequential(
            nn.Linear(classifier.in_features, self.hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(self.hidden, self.hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(self.hidden, 1),
        ).to(state.device)
        # Added before the loop builds its LR schedule, so the discriminator follows it too.
        state.optimizer.add_param_group({"params": list(self.discriminator.parameters()),
                                         "weight_decay": state.params.weight_decay})

    def _capture(self, module: nn.Module, args: tuple) -> None:
        self._features = args[0].flatten(1)

    def on_epoch_start(self, state: TrainState) -> None:
        self._sums = {"domain_loss": 0.0, "domain_accuracy": 0.0, "batches": 0}

    def extra_loss(self, state: TrainState, logits: Tensor, targets: Tensor) -> Tensor:
        if state.target_batch is None:
            raise ValueError("DANN needs unlabeled target images: train(..., target_images=...)")
        source = self._features
        state.model(state.target_batch)
        target = self._features
        strength = dann_strength(state.progress)
        features = reverse_gradient(torch.cat([source, target]), strength)
        domain = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(features.device)
        scores = self.discriminator(features).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(scores, domain)
        self._sums["domain_loss"] += float(loss.detach())
        self._sums["domain_accuracy"] += float(((scores > 0).float() == domain).float().mean())
        self._sums["batches"] += 1
        return self.weight * loss

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        batches = max(1, self._sums["batches"])
        metrics["domain_loss"] = self._sums["domain_loss"] / batches
        metrics["domain_accuracy"] = self._sums["domain_accuracy"] / batches

    def on_train_end(self, state: TrainState) -> None:
        self._handle.remove()  # the trained model computes as before, without feature capture
