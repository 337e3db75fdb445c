"""Shared test helpers: run cimflow/snakemake/dvc from the project's venv in temp copies."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LENET5 = {"module": "cimflow.models.lenet5", "class": "LeNet5", "args": {}}  # train.T.model as params.yaml writes it
BIN = Path(sys.executable).parent
COPY_IGNORE = shutil.ignore_patterns(
    ".venv", ".git", ".snakemake", "results", "logs", "mlruns", "mlflow.db", "__pycache__", "*.so",
    ".pytest_cache", "build", "*.egg-info", "reports", "dvc.lock", "tmp", "cache",
)


def tool_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=tool_env(**env), capture_output=True, text=True, timeout=timeout)


def smoke_params(raw: dict) -> dict:
    """The default params shrunk to seconds: the same stages with fewer methods, two epochs,
    one epoch per ADMM phase, small calibration and sweep."""
    raw = yaml.safe_load(yaml.safe_dump(raw))
    raw["tasks"] = ["digits"]  # the domain-adaptation task has its own smoke run (domain_smoke_params)
    raw["methods"] = ["baseline", "admm_prune", "admm_filter", "admm_quant", "dynasty"]  # each chain, not every variant
    raw["train"]["digits"] |= {"epochs": 2, "warmup_epochs": 0}
    raw["export"]["calibration_samples"] = 64
    raw["cim"] |= {"calibration_images": 32, "batch_size": 150}
    sweep = raw["admm"]["digits"].pop("sweep")
    for section in raw["admm"]["digits"].values():  # keep every step and period, one epoch each
        section["admm"] |= {"periods": 2, "period_epochs": 1}
        for phase in ("retrain", "freeze"):
            if phase in section:
                section[phase]["epochs"] = 1
    raw["admm"]["digits"]["sweep"] = sweep | {"targets": [50]}  # one point per listed pruner
    raw["cim"]["sweep"] |= {"methods": ["baseline"], "adc_bits": [4, 8], "cap_mismatch_sigma": [0.0, 0.02],
                            "rows": [128], "bias_dac_bits": [8], "accumulation": ["analog"],
                            "test_images": 60}
    return raw


def domain_smoke_params(raw: dict) -> dict:
    """The smoke params with only the domain-adaptation task and its methods, in seconds."""
    raw = smoke_params(raw)
    raw["tasks"] = ["digits_shift"]
    raw["methods"] = ["baseline", "dann", "admp", "adapt_then_prune", "prune_then_adapt"]
    raw["train"]["digits_shift"] |= {"epochs": 2, "warmup_epochs": 0}
    raw["admp"]["digits_shift"] |= {"game": raw["admp"]["digits_shift"]["game"] | {"epochs": 2},
                                    "finetune": {"epochs": 1, "lr": 0.005}}
    return raw


def sr_smoke_params(raw: dict) -> dict:
    """The smoke params with only the embedded super-resolution task and its methods, in seconds."""
    raw = smoke_params(raw)
    raw["tasks"] = ["sr_embedded"]
    raw["methods"] = ["sr_dense", "featreg", "sr_channel"]
    raw["seeds"] = raw["seeds"][:1]
    raw["train"]["sr_embedded"] |= {"epochs": 2, "warmup_epochs": 0, "patches_per_epoch": 64, "patch_size": 32}
    raw["featreg"]["sr_embedded"] |= {"epochs": 1, "levels": [0.5, 0.8]}
    return raw


def copy_project(dest: Path, shrink: Callable[[dict], dict] = smoke_params) -> Path:
    """A copy of the working tree (sources, params, rules, dvc.yaml) without state, its
    params shrunk by ``shrink``."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE)
    (dest / "reports").mkdir(exist_ok=True)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(shrink(raw), sort_keys=False))
    result = run(["cimflow", "dvc-yaml"], cwd=dest)  # the smoke DAG has fewer methods
    assert result.returncode == 0, result.stderr
    return dest


def edit_params(project: Path, dotted: str, value) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    node = raw
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture
def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())
