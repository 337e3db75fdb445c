"""Where every artifact lives. Snakemake rules, DVC stages and the stage code all
take their paths from these patterns, so the three cannot drift apart."""

from __future__ import annotations

from pathlib import Path

PREPARED_TRAIN = "results/{task}/data/train.safetensors"
PREPARED_TEST = "results/{task}/data/test.safetensors"
MANIFEST = "results/{task}/data/manifest.parquet"
MODEL = "results/{task}/{method}/model.safetensors"
HISTORY = "results/{task}/{method}/history.parquet"
MASKS = "results/{task}/{method}/masks.safetensors"
QUANTIZED = "results/{task}/{method}/quantized.safetensors"
STEPS = "results/{task}/{method}/steps.parquet"
BITMAPS = "results/{task}/{method}/bitmaps.parquet"
REFRESHES = "results/{task}/{method}/refreshes.parquet"
COST = "results/{task}/{method}/cost.parquet"
DYNASTY_SUMMARY = "results/{task}/{method}/dynasty.json"
INT8_MODEL = "results/{task}/{method}/int8.safetensors"
METRICS = "results/{task}/{method}/metrics.json"
CIM_CODES = "results/cim/calibration_codes.parquet"
CIM_TRIM = "results/cim/sign_trim.parquet"
CIM_MAPPING = "results/{task}/{method}/cim_mapping.parquet"
CIM_METRICS = "results/{task}/{method}/cim_metrics.json"
CIM_SWEEP = "results/{task}/{method}/cim_sweep.parquet"
REPORT_MD = "reports/summary.md"
REPORT_HTML = "reports/summary.html"
PLOT_ACCURACY_SIZE = "reports/accuracy_vs_size.png"
PLOT_TRAINING = "reports/training_curves.png"
PLOT_CIM_SWEEP = "reports/cim_sweep.png"
PLOT_COMPRESSION = "reports/compression.png"
PLOT_BITWIDTHS = "reports/dynasty_bitwidths.png"
LOG = "logs/{stage}/{job}.log"


def path(pattern: str, **wildcards: str) -> Path:
    return Path(pattern.format(**wildcards))


def for_method(pattern: str, method: str) -> str:
    """A pattern with the method fixed and the other wildcards left open (for rules)."""
    return pattern.replace("{method}", method)
