"""Where every artifact lives. Snakemake rules, DVC stages and the stage code all
take their paths from these patterns, so the three cannot drift apart.

A task's data split is shared by every seed (so seeds are paired on the same test
images); everything trained from it lives under ``seed{seed}``."""

from __future__ import annotations

from pathlib import Path

PREPARED_TRAIN = "results/{task}/data/train.safetensors"
PREPARED_VAL = "results/{task}/data/val.safetensors"
PREPARED_TEST = "results/{task}/data/test.safetensors"
MANIFEST = "results/{task}/data/manifest.parquet"
TARGET_TRAIN = "results/{task}/data/target_train.safetensors"  # domain adaptation: unlabeled
TARGET_VAL = "results/{task}/data/target_val.safetensors"  # unlabeled, for label-free proxies
MODEL = "results/{task}/seed{seed}/{method}/model.safetensors"
HISTORY = "results/{task}/seed{seed}/{method}/history.parquet"
MASKS = "results/{task}/seed{seed}/{method}/masks.safetensors"
QUANTIZED = "results/{task}/seed{seed}/{method}/quantized.safetensors"
STEPS = "results/{task}/seed{seed}/{method}/steps.parquet"
BITMAPS = "results/{task}/seed{seed}/{method}/bitmaps.parquet"
REFRESHES = "results/{task}/seed{seed}/{method}/refreshes.parquet"
COST = "results/{task}/seed{seed}/{method}/cost.parquet"
DYNASTY_SUMMARY = "results/{task}/seed{seed}/{method}/dynasty.json"
INT8_MODEL = "results/{task}/seed{seed}/{method}/int8.safetensors"
METRICS = "results/{task}/seed{seed}/{method}/metrics.json"
CHANNEL_MASKS = "results/{task}/seed{seed}/{method}/channel_masks.safetensors"
PERIODS = "results/{task}/seed{seed}/{method}/periods.parquet"
THRESHOLDS = "results/{task}/seed{seed}/{method}/thresholds.parquet"  # feature sparsifier, per layer and level
SR_METRICS = "results/{task}/seed{seed}/{method}/sr_metrics.json"
SR_SPARSITY = "results/{task}/seed{seed}/{method}/sparsity.parquet"  # per image, layer and level
SR_SAMPLES = "results/{task}/seed{seed}/{method}/samples.safetensors"  # crops for the report
SR_CIM_MAPPING = "results/{task}/seed{seed}/{method}/sr_cim_mapping.parquet"  # per level and layer
SR_CIM_LAYERS = "results/{task}/seed{seed}/{method}/sr_cim_layers.parquet"  # per level, image and layer
SR_CIM_METRICS = "results/{task}/seed{seed}/{method}/sr_cim_metrics.json"
SWEEP_MODEL = "results/{task}/seed{seed}/sweep/{method}/x{target}/model.safetensors"  # ratio sweep point
SWEEP_STEPS = "results/{task}/seed{seed}/sweep/{method}/x{target}/steps.parquet"
SWEEP_METRICS = "results/{task}/seed{seed}/sweep/{method}/x{target}/metrics.json"
CIM_CODES = "results/cim/calibration_codes.parquet"
CIM_TRIM = "results/cim/sign_trim.parquet"
CIM_MAPPING = "results/{task}/seed{seed}/{method}/cim_mapping.parquet"
CIM_SYSTEM = "results/{task}/seed{seed}/{method}/cim_system.parquet"
CIM_METRICS = "results/{task}/seed{seed}/{method}/cim_metrics.json"
CIM_SWEEP = "results/{task}/seed{seed}/{method}/cim_sweep.parquet"
REPORT_MD = "reports/summary.md"
REPORT_HTML = "reports/summary.html"
PLOT_ACCURACY_SIZE = "reports/accuracy_vs_size.png"
PLOT_TRAINING = "reports/training_curves.png"
PLOT_CIM_SWEEP = "reports/cim_sweep.png"
PLOT_CIM_LAYERS = "reports/cim_layers.png"
PLOT_COMPRESSION = "reports/compression.png"
PLOT_BITWIDTHS = "reports/dynasty_bitwidths.png"
PLOT_DOMAIN = "reports/domain_pruning.png"
PLOT_SR = "reports/sr_psnr_vs_macs.png"
PLOT_SR_CROPS = "reports/sr_crops.png"
PLOT_SR_CIM = "reports/sr_cim_energy.png"
PLOT_RATIO_SWEEP = "reports/ratio_sweep.png"
LOG = "logs/{stage}/{job}.log"


def path(pattern: str, **wildcards: str) -> Path:
    return Path(pattern.format(**wildcards))


def for_method(pattern: str, method: str) -> str:
    """A pattern with the method fixed and the other wildcards left open (for rules)."""
    return pattern.replace("{method}", method)
