"""Per-layer schedules for the ratio sweep, derived from the task's own ADMM schedule.

A sweep point asks for an overall compression target R (conv+fc weights / nonzeros).
Each progressive step of ``prune`` keeps a per-layer profile (which layers are pruned
harder); the point keeps those profiles and rescales them: step k's kept fractions are
multiplied by one factor, so that step lands at the same place on a log scale between
1x and R as ``prune``'s step k lies between 1x and its final ratio. At R equal to
``prune``'s own ratio every step keeps ``prune``'s counts. Steps, periods, rho and epochs are
``prune``'s, so points differ in the ratio alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from cimflow.compress.admm.params import AdmmPruneParams, AdmmStep
from cimflow.compress.admm.projections import kept_count

BISECTION_STEPS = 200
TOLERANCE = 1e-9  # relative: a step's target comes through exp/log, so its own ratio may round just below it


def overall_ratio(sizes: Mapping[str, int], ratios: Mapping[str, float]) -> float:
    """Weights / nonzeros of the named layers at per-layer ratios (exact kept counts)."""
    kept = sum(kept_count(sizes[n], ratios[n]) for n in ratios)
    return sum(sizes[n] for n in ratios) / kept


def rescale(sizes: Mapping[str, int], ratios: Mapping[str, float], target: float) -> dict[str, float]:
    """Per-layer ratios with ``ratios``' kept-fraction profile scaled to reach ``target`` overall.

    Kept fractions become min(1, c * (1 - r)) for the largest c whose exact kept counts
    reach ``target``; a layer cannot go below one weight, so a target beyond every layer
    at one weight is an error.
    """
    total = sum(sizes[n] for n in ratios)
    floor = total / len(ratios)
    if target > floor:
        raise ValueError(f"target {target}x needs fewer weights than one per layer (at most {floor:.0f}x)")
    keep = {n: 1.0 - r for n, r in ratios.items()}

    def at(c: float) -> dict[str, float]:
        return {n: 1.0 - min(1.0, c * k) for n, k in keep.items()}

    low, high = 0.0, 1.0 / min(k for k in keep.values() if k > 0)  # high keeps every weight
    for _ in range(BISECTION_STEPS):  # largest c still at or above the target
        mid = (low + high) / 2
        low, high = (mid, high) if overall_ratio(sizes, at(mid)) >= target * (1 - TOLERANCE) else (low, mid)
    return {n: round(r, 9) for n, r in at(low).items()}


def sweep_schedule(prune: AdmmPruneParams, sizes: Mapping[str, int], target: float) -> AdmmPruneParams:
    """``prune`` with its steps rescaled to end at ``target``x (see the module docstring)."""
    final = math.log(overall_ratio(sizes, prune.steps[-1].ratios))
    if final <= 0:
        raise ValueError("prune's last step prunes nothing, so it has no profile to rescale")
    steps, previous = [], dict.fromkeys(prune.steps[0].ratios, 0.0)
    for step in prune.steps:
        share = math.log(overall_ratio(sizes, step.ratios)) / final
        ratios = rescale(sizes, step.ratios, target ** share)
        ratios = {n: max(r, previous[n]) for n, r in ratios.items()}  # progressive: never loosen a layer
        steps.append(AdmmStep(ratios=ratios))
        previous = ratios
    return prune.model_copy(update={"steps": steps})
