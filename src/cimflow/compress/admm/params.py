"""ADMM method parameters: the params.yaml schema of admm.<task>, kept apart from the
algorithm so that validating params.yaml does not load torch or the training loop."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from cimflow.schema import StrictModel


PositiveInt = Annotated[int, Field(gt=0)]
LearningRate = Annotated[float, Field(gt=0.0, le=10.0)]
PruneRatio = Annotated[float, Field(ge=0.0, lt=1.0)]
WeightBits = Annotated[int, Field(ge=1, le=8)]
FreezeFraction = Annotated[float, Field(gt=0.0, le=1.0)]


class AdmmSchedule(StrictModel):
    """One ADMM stage: ``periods`` W-steps of ``period_epochs`` epochs at ``lr``, rho growing after each."""

    periods: PositiveInt
    period_epochs: PositiveInt
    lr: LearningRate
    rho: Annotated[float, Field(gt=0.0)]
    rho_growth: Annotated[float, Field(ge=1.0)]


class Retrain(StrictModel):
    """Masked retraining after each progressive step's hard projection."""

    epochs: PositiveInt
    lr: LearningRate


class AdmmStep(StrictModel):
    """Pruning targets of one progressive step: layer name -> fraction of its weights zeroed."""

    ratios: Annotated[dict[str, PruneRatio], Field(min_length=1)]


class AdmmPruneParams(StrictModel):
    """Progressive ADMM pruning: every step runs the same ADMM schedule and retraining."""

    granularity: Literal["unstructured", "filter"]
    admm: AdmmSchedule
    retrain: Retrain
    steps: Annotated[list[AdmmStep], Field(min_length=1)]

    @model_validator(mode="after")
    def _steps_tighten_the_same_layers(self) -> AdmmPruneParams:
        first = self.steps[0].ratios
        for i, (before, after) in enumerate(zip(self.steps, self.steps[1:]), start=1):
            if set(after.ratios) != set(first):
                raise ValueError(
                    f"steps[{i}] names layers {sorted(after.ratios)}, steps[0] names {sorted(first)}"
                )
            for layer, ratio in after.ratios.items():
                if ratio < before.ratios[layer]:
                    raise ValueError(
                        f"steps[{i}].ratios.{layer} = {ratio} is below steps[{i - 1}] "
                        f"({before.ratios[layer]}): progressive ratios must not decrease"
                    )
        return self


class Freeze(StrictModel):
    """Quantized retraining: after round r, ``fractions[r]`` of each layer's weights sit frozen on a level."""

    fractions: Annotated[list[FreezeFraction], Field(min_length=1)]
    epochs: PositiveInt
    lr: LearningRate

    @model_validator(mode="after")
    def _fractions_rise_to_one(self) -> Freeze:
        if any(b <= a for a, b in zip(self.fractions, self.fractions[1:])):
            raise ValueError(f"fractions must increase strictly, got {self.fractions}")
        if self.fractions[-1] != 1.0:
            raise ValueError(f"fractions must end at 1.0 so every weight is quantized, got {self.fractions}")
        return self


class AdmmQuantizeParams(StrictModel):
    """ADMM quantization to ``bits`` per layer (1 = binary), then progressive freezing."""

    bits: Annotated[dict[str, WeightBits], Field(min_length=1)]
    admm: AdmmSchedule
    freeze: Freeze


SweepMethod = Literal["admm_prune", "magnitude_one_shot", "magnitude_iterative"]


class AdmmSweep(StrictModel):
    """The ratio sweep: each method pruned to each overall compression target.

    A target's per-layer ratios are ``prune``'s, rescaled (``cimflow.compress.admm.sweep``),
    with the same steps, periods and epoch budget, so only the ratio changes.
    """

    targets: Annotated[list[Annotated[int, Field(gt=1)]], Field(min_length=1)]  # overall weights / nonzeros
    methods: Annotated[list[SweepMethod], Field(min_length=1)]

    @model_validator(mode="after")
    def _distinct(self) -> AdmmSweep:
        for name, values in (("targets", self.targets), ("methods", self.methods)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists a value twice: {values}")
        return self


class AdmmTaskParams(StrictModel):
    prune: AdmmPruneParams
    filter: AdmmPruneParams
    quantize: AdmmQuantizeParams
    binarize: AdmmQuantizeParams
    sweep: AdmmSweep

    @model_validator(mode="after")
    def _filter_is_structured(self) -> AdmmTaskParams:
        if self.filter.granularity != "filter":
            raise ValueError(f"filter.granularity must be 'filter' (whole output filters), "
                             f"got {self.filter.granularity!r}")
        return self
