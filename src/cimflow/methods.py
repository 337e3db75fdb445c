"""The methods a task can run: which stage builds each, from which model, what it
writes, and what the report holds it against.

One table read by the rules (which artifacts exist per method), the CLI (which
methods a stage accepts), the stages (where a compressed model starts) and the report
(paired comparisons), so a method's facts are written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from cimflow import layout


@dataclass(frozen=True)
class Method:
    name: str
    stage: str  # the `cimflow` command that builds it
    outputs: tuple[str, ...]  # layout patterns the stage writes for it
    source: str | None = None  # the method whose model it starts from (None: trained from scratch)
    reference: str | None = None  # what its accuracy is compared against, seed by seed


_PRUNED = (layout.MODEL, layout.MASKS, layout.STEPS)
_QUANTIZED = (layout.MODEL, layout.QUANTIZED, layout.STEPS)
_DYNASTY = (layout.MODEL, layout.HISTORY, layout.BITMAPS, layout.REFRESHES, layout.COST, layout.DYNASTY_SUMMARY)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("baseline", "train", (layout.MODEL, layout.HISTORY)),
        Method("admm_prune", "admm_prune", _PRUNED, source="baseline", reference="baseline"),
        Method("admm_quant", "admm_quantize", _QUANTIZED, source="admm_prune", reference="baseline"),
        Method("admm_binary", "admm_binarize", _QUANTIZED, source="baseline", reference="baseline"),
        Method("magnitude_one_shot", "magnitude_prune", _PRUNED, source="baseline", reference="baseline"),
        Method("magnitude_iterative", "magnitude_prune", _PRUNED, source="baseline", reference="baseline"),
        Method("dynasty", "dynasty_train", _DYNASTY, reference="dynasty_int8"),
        Method("dynasty_int8", "dynasty_train", _DYNASTY),
    )
}


def built_by(stage: str) -> list[str]:
    """Methods the stage ``stage`` builds, in table order."""
    return [m.name for m in METHODS.values() if m.stage == stage]


def writing(pattern: str, methods: list[str]) -> list[str]:
    """Those of ``methods`` whose stage writes the artifact ``pattern``."""
    return [m for m in methods if pattern in METHODS[m].outputs]
