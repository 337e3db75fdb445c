"""Stage `prepare`: read a raw data set and write train/validation/test tensors plus a manifest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import arrays_sha256, save_table
from cimflow.config import Params
from cimflow.data.cifar10 import load_cifar10_binary, load_cifar10_folder
from cimflow.data.digits import load_digits
from cimflow.data.mnist import load_mnist_idx
from cimflow.data.split import Split, carve_validation
from cimflow.data.usps import load_usps_h5
from cimflow.stages.common import outputs_exist, save_split, stage_params


def load_source(params: Params, task: str) -> tuple[Split, Split]:
    """The source's (train, test) split: its official one, or a seeded stratified one."""
    cfg = params.data[task]
    if cfg.source == "sklearn_digits":
        return load_digits(cfg.test_fraction, cfg.split_seed)
    if cfg.source == "mnist_idx":
        return load_mnist_idx(Path(cfg.path), cfg.test_fraction, cfg.split_seed)
    if cfg.source == "usps_h5":
        return load_usps_h5(Path(cfg.path))
    if cfg.source == "cifar10_folder":
        return load_cifar10_folder(Path(cfg.path))
    return load_cifar10_binary(Path(cfg.path))


def manifest(splits: dict[str, Split]) -> pd.DataFrame:
    """Counts and class balance per split, with each split's content hash."""
    rows = []
    for name, split in splits.items():
        digest = arrays_sha256({"images": split.images, "labels": split.labels})
        counts = pd.Series(split.labels).value_counts().reindex(range(len(split.class_names)), fill_value=0)
        for cls, count in counts.items():
            rows.append({
                "split": name,
                "class_index": int(cls),
                "class_name": split.class_names[cls],
                "count": int(count),
                "fraction": float(count) / len(split.labels),
                "height": split.images.shape[2],
                "width": split.images.shape[3],
                "channels": split.images.shape[1],
                "split_sha256": digest,
            })
    return pd.DataFrame(rows)


def run(task: str, params_file: Path) -> None:
    params, values = stage_params("prepare", params_file, task=task)
    cfg = params.data[task]
    train, test = load_source(params, task)
    train, val = carve_validation(train, cfg.val_fraction, cfg.split_seed)
    splits = {"train": train, "val": val, "test": test}
    patterns = (layout.PREPARED_TRAIN, layout.PREPARED_VAL, layout.PREPARED_TEST)
    outs = [layout.path(p, task=task) for p in (*patterns, layout.MANIFEST)]
    table = manifest(splits)
    with tracking.stage_run("prepare", values, [], task=task) as run_:
        for path, split in zip(outs[:3], splits.values(), strict=True):
            save_split(path, split, cfg.source)
        save_table(outs[3], table)
        run_.log_metrics({f"{name}_samples": len(split.labels) for name, split in splits.items()}
                         | {"classes": len(train.class_names)})
        run_.log_outputs(outputs_exist(outs))
