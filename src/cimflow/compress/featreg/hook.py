"""Feature Regularization on the shared training loop: multi-level (sandwich) training.

Each step trains the sparsest level (the loop's own forward pass), the densest level and
one level drawn at random between them, and sums their losses (the sandwich rule of
slimmable networks), so one set of weights serves every level; each forward adds
``weight`` times its dropped feature magnitude (the feature regularizer). With a single
level only the loop's forward runs."""

from __future__ import annotations

import torch

from cimflow.compress.featreg.sparsify import Sparsifier
from cimflow.train import Hook, TrainState


class FeatRegHook(Hook):
    def __init__(self, sparsifier: Sparsifier, weight: float, seed: int) -> None:
        self.sparsifier, self.weight = sparsifier, weight
        self.generator = torch.Generator().manual_seed(seed + 7919)
        self.sparsest = len(sparsifier.levels) - 1

    def on_train_start(self, state: TrainState) -> None:
        self.sparsifier.level = self.sparsest

    def _regularizer(self) -> torch.Tensor:
        dropped = self.sparsifier.take_dropped()
        return self.weight * dropped if dropped is not None else torch.zeros(())

    def extra_loss(self, state: TrainState, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = self._regularizer()
        others = [0] if self.sparsest > 0 else []
        if self.sparsest > 1:
            others.append(int(torch.randint(1, self.sparsest, (1,), generator=self.generator)))
        for level in others:
            self.sparsifier.level = level
            loss = loss + state.loss_fn(state.model(state.inputs), targets) + self._regularizer()
        self.sparsifier.level = self.sparsest
        return loss

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        self.sparsifier.take_dropped()  # validation passes add none that train anything
