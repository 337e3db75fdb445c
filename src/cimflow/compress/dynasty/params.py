"""DYNASTY's parameters, validated like config.py: strict, frozen, no defaults.

Every value comes from params.yaml (``dynasty:``), so DVC sees each one. Errors name
the field: pydantic puts the key path in front of constraint errors, and the
cross-field checks below spell out the field names themselves.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from cimflow.schema import StrictModel

TensorKind = Literal["weight", "activation", "gradient"]
TENSOR_KINDS: tuple[TensorKind, ...] = ("weight", "activation", "gradient")

Width = Annotated[int, Field(ge=2, le=16)]
PositiveFloat = Annotated[float, Field(gt=0.0)]


class BudgetTarget(StrictModel):
    """Fewest bits such that the MAC-weighted mean operand width stays <= the budget.

    The budget runs linearly from ``average_bits - ramp_bits`` at the start of training
    to ``average_bits + ramp_bits`` at its end, so its mean over the run is
    ``average_bits``: fewer bits while the learning rate is high, more for the final
    descent (README, DYNASTY on CIFAR-10). ``ramp_bits: 0`` is a constant budget.
    """

    mode: Literal["budget"]
    average_bits: PositiveFloat
    ramp_bits: Annotated[float, Field(ge=0.0)]

    def at(self, progress: float) -> float:
        """The budget when a fraction ``progress`` (0..1) of the training steps is done."""
        return self.average_bits + self.ramp_bits * (2.0 * progress - 1.0)


class ThresholdTarget(StrictModel):
    """Each block gets the fewest bits whose sensitivity is <= ``max_sensitivity``."""

    mode: Literal["threshold"]
    max_sensitivity: PositiveFloat


class MinBits(StrictModel):
    """Per-tensor-kind floors (e.g. gradients >= 4 bits); the candidate set still applies."""

    weight: Width
    activation: Width
    gradient: Width


class StabilityParams(StrictModel):
    """Convergence feedback: tighten the threshold by ``tighten_factor`` per level.

    The level rises at once when the training-loss EMA exceeds its lowest value since
    the last level change by more than ``divergence_tolerance`` (relative); otherwise,
    every ``stall_patience`` refreshes, it rises when the EMA improved by less than
    ``min_improvement`` (relative) over them and falls by one when it improved more.
    """

    loss_ema_decay: Annotated[float, Field(gt=0.0, lt=1.0)]
    divergence_tolerance: Annotated[float, Field(ge=0.0)]
    stall_patience: Annotated[int, Field(gt=0)]
    min_improvement: Annotated[float, Field(ge=0.0, lt=1.0)]
    tighten_factor: Annotated[float, Field(gt=1.0)]
    max_level: Annotated[int, Field(ge=0)]


class CostParams(StrictModel):
    """The bit-scalable accelerator model (see dynasty.cost) and its 8-bit reference."""

    baseline_bits: Width
    brick_bits: Annotated[int, Field(ge=1, le=8)]  # MAC brick width of the brick-granular model; 1 is bit-exact
    exponent_bits: Annotated[int, Field(ge=1, le=16)]
    mac_energy_pj: PositiveFloat
    memory_energy_pj_per_bit: PositiveFloat


class DynastyParams(StrictModel):
    block_size: Annotated[int, Field(ge=2, le=1024)]
    candidate_bits: Annotated[list[Width], Field(min_length=1)]
    min_bits: MinBits
    widest_mac_share: Annotated[float, Field(ge=0.0, lt=1.0)]
    stochastic_gradient_rounding: bool
    target: Annotated[BudgetTarget | ThresholdTarget, Field(discriminator="mode")]
    refresh_interval: Annotated[int, Field(gt=0)]
    hysteresis: Annotated[int, Field(gt=0)]
    warmup_epochs: Annotated[int, Field(ge=0)]
    stability: StabilityParams
    cost: CostParams

    @model_validator(mode="after")
    def _consistent(self) -> DynastyParams:
        bits = self.candidate_bits
        if any(a >= b for a, b in zip(bits, bits[1:])):
            raise ValueError(f"candidate_bits must be strictly increasing, got {bits}")
        target = self.target
        if isinstance(target, BudgetTarget) and not bits[0] <= target.at(0.0) <= target.at(1.0) <= bits[-1]:
            raise ValueError(
                f"target.average_bits ({target.average_bits}) +- target.ramp_bits ({target.ramp_bits}) "
                f"must lie within the candidate_bits range [{bits[0]}, {bits[-1]}]"
            )
        for kind in TENSOR_KINDS:
            floor = getattr(self.min_bits, kind)
            if floor > bits[-1]:
                raise ValueError(f"min_bits.{kind} ({floor}) exceeds the widest candidate_bits entry ({bits[-1]})")
        return self
