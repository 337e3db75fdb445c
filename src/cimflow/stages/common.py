"""Shared plumbing for stage modules: params views, prepared-data I/O, torch setup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from cimflow.artifacts import ArtifactError, load_tensors, save_tensors
from cimflow.config import PARAMS_FILE, Params, load_params, lookup
from cimflow.data.split import Split
from cimflow.stages import STAGES

DATA_FORMAT = "cimflow-data-v1"


def stage_params(stage: str, params_file: Path = PARAMS_FILE, **wildcards: str) -> tuple[Params, dict[str, Any]]:
    """Validated params plus the values of exactly the keys the stage declares.

    The whole file is validated (a bad key anywhere stops every stage before it writes
    anything); the returned dict is what gets logged and hashed.
    """
    params = load_params(params_file)
    raw = yaml.safe_load(Path(params_file).read_text())
    return params, {key: lookup(raw, key) for key in STAGES[stage].param_keys(**wildcards)}


def setup_torch(params: Params) -> None:
    torch.set_num_threads(params.threads)


def save_split(path: Path, split: Split, source: str) -> None:
    save_tensors(
        path,
        {"images": split.images, "labels": split.labels},
        {"format": DATA_FORMAT, "class_names": json.dumps(list(split.class_names)), "source": source},
    )


def load_split(path: Path) -> Split:
    tensors, meta = load_tensors(path)
    if meta.get("format") != DATA_FORMAT or set(tensors) != {"images", "labels"}:
        raise ArtifactError(f"{path}: not a cimflow prepared data file")
    try:
        return Split(tensors["images"], tensors["labels"], tuple(json.loads(meta["class_names"])))
    except (ValueError, KeyError) as exc:
        raise ArtifactError(f"{path}: malformed prepared data ({exc})") from exc


def outputs_exist(paths: list[Path]) -> list[Path]:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ArtifactError(f"stage finished without writing {', '.join(map(str, missing))}")
    return paths


def sample_indices(n: int, count: int, seed: int) -> np.ndarray:
    """A seeded, sorted subset of ``range(n)`` of size min(n, count)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[: min(n, count)])
