"""The params.yaml schema of ``admp.<task>`` (domain-adaptation tasks), apart from the
algorithm so that validating params.yaml loads no torch.

Epoch budgets: the ADMP student runs ``game.epochs`` then ``finetune.epochs`` from the
teacher; both pruning baselines get the same total (``game.epochs + finetune.epochs``) at
``baseline_lr``, so every pruned model has trained equally long after its starting point.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cimflow.schema import Fraction, PositiveInt, StrictModel

LearningRate = Annotated[float, Field(gt=0.0, le=10.0)]
Positive = Annotated[float, Field(gt=0.0)]


class DannParams(StrictModel):
    """The UDA teacher: DANN's domain-loss weight and its discriminator's hidden width."""

    weight: Positive
    hidden: PositiveInt


class GameParams(StrictModel):
    """The adversarial double-mask game (cimflow.compress.admp.game.GameSettings)."""

    epochs: PositiveInt
    lr: LearningRate
    temperature: Positive
    alpha: Annotated[float, Field(ge=0.0)]
    gamma: Annotated[float, Field(ge=0.0)]
    confidence: Fraction
    rho: Positive
    rho_growth: Annotated[float, Field(ge=1.0)]
    admm_every: PositiveInt
    adversary_lr: LearningRate
    mask_lr: LearningRate
    clip_norm: Positive


class FinetuneParams(StrictModel):
    """Distillation fine-tune of the physically shrunk student."""

    epochs: PositiveInt
    lr: LearningRate


class AdmpTaskParams(StrictModel):
    ratio: Fraction  # share of each prunable layer's output channels removed
    dann: DannParams
    game: GameParams
    finetune: FinetuneParams
    baseline_lr: LearningRate  # fine-tune rate of adapt-then-prune and prune-then-adapt
