"""The methods a task can run: which stage builds each, from which model and artifacts,
what it writes, and what the report holds it against.

One table read by the rules (workflow/rules/methods.smk makes one rule per method from
it), the CLI (which methods a stage accepts), the stages (what a compressed model
starts from) and the report (paired comparisons), so a method's facts are written once
and adding a method touches no rule file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cimflow import layout

CLASSIFICATION, DOMAIN_ADAPTATION = "classification", "domain_adaptation"  # task kinds (cimflow.params.data)
SUPER_RESOLUTION = "super_resolution"
LABELLED_KINDS = (CLASSIFICATION, DOMAIN_ADAPTATION)  # kinds scored by accuracy (evaluate, export, the chip)
_SOURCE_DATA = (layout.PREPARED_TRAIN, layout.PREPARED_VAL)
_DOMAIN_DATA = (*_SOURCE_DATA, layout.TARGET_TRAIN, layout.TARGET_VAL)


@dataclass(frozen=True)
class Method:
    name: str
    stage: str  # the `cimflow` command that builds it
    outputs: tuple[str, ...]  # layout patterns the stage writes for it
    source: str | None = None  # the method whose model it starts from (None: trained from scratch)
    reference: str | None = None  # what its accuracy is compared against, seed by seed
    reads: tuple[str, ...] = ()  # the source's artifacts the stage reads (layout patterns)
    kinds: tuple[str, ...] = (CLASSIFICATION,)  # the task kinds it runs on
    data: tuple[str, ...] = _SOURCE_DATA  # the task's prepared data the stage reads (never its test split)


_PRUNED = (layout.MODEL, layout.MASKS, layout.STEPS)
_QUANTIZED = (layout.MODEL, layout.QUANTIZED, layout.STEPS)
_CHANNELS = (layout.MODEL, layout.HISTORY, layout.CHANNEL_MASKS)
_ADAPTS = {"kinds": (DOMAIN_ADAPTATION,), "data": _DOMAIN_DATA}
_SR = {"kinds": (SUPER_RESOLUTION,)}
_DYNASTY = (layout.MODEL, layout.HISTORY, layout.BITMAPS, layout.REFRESHES, layout.COST, layout.DYNASTY_SUMMARY)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("baseline", "train", (layout.MODEL, layout.HISTORY), kinds=(CLASSIFICATION, DOMAIN_ADAPTATION)),
        Method("admm_prune", "admm_prune", _PRUNED, "baseline", "baseline", (layout.MODEL,)),
        Method("admm_filter", "admm_filter", _PRUNED, "baseline", "baseline", (layout.MODEL,)),
        Method("admm_quant", "admm_quantize", _QUANTIZED, "admm_prune", "baseline", (layout.MODEL, layout.MASKS)),
        Method("admm_binary", "admm_binarize", _QUANTIZED, "baseline", "baseline", (layout.MODEL,)),
        Method("magnitude_one_shot", "magnitude_prune", _PRUNED, "baseline", "baseline", (layout.MODEL,)),
        Method("magnitude_iterative", "magnitude_prune", _PRUNED, "baseline", "baseline", (layout.MODEL,)),
        Method("dynasty", "dynasty_train", _DYNASTY, reference="dynasty_int8"),
        Method("dynasty_int8", "dynasty_train", _DYNASTY),
        # Domain adaptation (ADMP): on these tasks "baseline" is the source-only model.
        Method("dann", "dann_train", (layout.MODEL, layout.HISTORY), reference="baseline", **_ADAPTS),
        Method("admp", "admp_prune", (*_CHANNELS, layout.PERIODS), "dann", "dann", (layout.MODEL,), **_ADAPTS),
        Method("adapt_then_prune", "channel_prune", _CHANNELS, "dann", "dann", (layout.MODEL,), **_ADAPTS),
        Method("prune_then_adapt", "channel_prune", _CHANNELS, "baseline", "dann", (layout.MODEL,), **_ADAPTS),
        # Super resolution (Feature Regularization): a dense network, then per-pixel channel sparsity.
        Method("sr_dense", "sr_train", (layout.MODEL, layout.HISTORY), **_SR),
        Method("featreg", "featreg_train", (layout.MODEL, layout.HISTORY, layout.THRESHOLDS), "sr_dense",
               "sr_dense", (layout.MODEL,), **_SR),
        # The structured baseline: the same recipe with static channel masks (channel pruning).
        Method("sr_channel", "featreg_train", (layout.MODEL, layout.HISTORY, layout.THRESHOLDS), "sr_dense",
               "sr_dense", (layout.MODEL,), **_SR),
    )
}


def built_by(stage: str) -> list[str]:
    """Methods the stage ``stage`` builds, in table order."""
    return [m.name for m in METHODS.values() if m.stage == stage]


def for_kind(methods: list[str], kind: str) -> list[str]:
    """Those of ``methods`` that run on tasks of ``kind``."""
    return [m for m in methods if kind in METHODS[m].kinds]


def writing(pattern: str, methods: list[str]) -> list[str]:
    """Those of ``methods`` whose stage writes the artifact ``pattern``."""
    return [m for m in methods if pattern in METHODS[m].outputs]


def source_inputs(method: str) -> dict[str, str]:
    """The source method's artifacts ``method``'s stage reads, as rule inputs by name
    (patterns with task and seed left open)."""
    spec = METHODS[method]
    return {f"source_{Path(p).stem}": layout.for_method(p, spec.source) for p in spec.reads}
