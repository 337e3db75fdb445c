"""Stages `prepare` and `prepare_target`: read a raw data set and write its splits.

``prepare`` writes train/validation/test tensors plus a manifest for every task. On a
domain-adaptation task train and validation are the labeled source and test is the
labeled *target* test split, so every later stage (export, evaluation, the chip) works
unchanged and measures what the method is for. ``prepare_target`` writes that task's
unlabeled target train and validation splits: their labels are dropped here, before
anything is written, so no training stage can read them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cimflow import layout, tracking
from cimflow.artifacts import arrays_sha256, save_table
from cimflow.config import Params
from cimflow.data.cifar10 import load_cifar10_binary, load_cifar10_folder
from cimflow.data.digits import load_digits
from cimflow.data.domains import (
    DomainPair,
    load_digits_shift,
    load_mnist_usps,
    load_office_folder,
)
from cimflow.data.mnist import load_mnist_idx
from cimflow.data.split import DataError, Split, carve_validation
from cimflow.data.usps import load_usps_h5
from cimflow.methods import DOMAIN_ADAPTATION, SUPER_RESOLUTION
from cimflow.sr import data as srdata
from cimflow.stages.common import outputs_exist, save_split, stage_params


def load_pair(params: Params, task: str) -> DomainPair:
    """A domain-adaptation task's four splits."""
    cfg = params.data[task]
    if cfg.source == "digits_shift":
        return load_digits_shift(cfg.test_fraction, cfg.split_seed)
    if cfg.source == "mnist_usps":
        return load_mnist_usps(Path(cfg.mnist_path), Path(cfg.usps_path), cfg.test_fraction, cfg.split_seed)
    if cfg.source == "office_folder":
        return load_office_folder(Path(cfg.path), cfg.source_domain, cfg.target_domain, cfg.image_size,
                                  cfg.test_fraction, cfg.split_seed)
    raise DataError(f"data.{task}: source {cfg.source!r} is not a domain pair (a {cfg.kind} task has no target)")


def load_source(params: Params, task: str) -> tuple[Split, Split]:
    """The task's labeled (train, test) split: its official one, or a seeded stratified
    one; for a domain pair, the source train and the target test split."""
    cfg = params.data[task]
    if cfg.kind == DOMAIN_ADAPTATION:
        pair = load_pair(params, task)
        return pair.source_train, pair.target_test
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
    if cfg.kind == SUPER_RESOLUTION:
        patterns = (layout.PREPARED_TRAIN, layout.PREPARED_VAL, layout.PREPARED_TEST, layout.MANIFEST)
        prepare_sr(task, params, values, [layout.path(p, task=task) for p in patterns])
        return
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


def run_target(task: str, params_file: Path) -> None:
    """Stage `prepare_target`: the unlabeled target train split, less a validation part."""
    params, values = stage_params("prepare_target", params_file, task=task)
    cfg = params.data[task]
    target, target_val = carve_validation(load_pair(params, task).unlabeled(), cfg.val_fraction, cfg.split_seed)
    outs = [layout.path(p, task=task) for p in (layout.TARGET_TRAIN, layout.TARGET_VAL)]
    with tracking.stage_run("prepare_target", values, [], task=task) as run_:
        for path, split in zip(outs, (target, target_val), strict=True):
            save_split(path, split, cfg.source)
        run_.log_metrics({"target_train_samples": len(target.labels), "target_val_samples": len(target_val.labels)})
        run_.log_outputs(outputs_exist(outs))


def load_sr_images(params: Params, task: str) -> tuple[srdata.SrSet, srdata.SrSet, srdata.SrSet]:
    """(train, validation, test) pairs of a super-resolution task: train and validation are
    whole training images (validation held out by ``split_seed``), test every named test set."""
    cfg = params.data[task]
    if cfg.source == "sr_embedded":
        training = srdata.load_embedded(srdata.EMBEDDED_TRAIN)
        tests = {srdata.EMBEDDED_SET: srdata.load_embedded(srdata.EMBEDDED_TEST)}
    else:
        training = [im for folder in cfg.train for im in srdata.load_folder(Path(folder))]
        tests = {name: srdata.load_folder(Path(folder)) for name, folder in cfg.test.items()}
    train, val = srdata.hold_out(training, cfg.val_fraction, cfg.split_seed)
    test = [srdata.make_pairs(images, name, cfg.scale) for name, images in tests.items()]
    merged = srdata.SrSet(tuple(a for t in test for a in t.hr), tuple(a for t in test for a in t.lr),
                          tuple(a for t in test for a in t.names), tuple(a for t in test for a in t.sets), cfg.scale)
    return srdata.make_pairs(train, "train", cfg.scale), srdata.make_pairs(val, "val", cfg.scale), merged


def sr_manifest(splits: dict[str, srdata.SrSet]) -> pd.DataFrame:
    """One row per image: split, set, size."""
    return pd.DataFrame([{"split": split, "set": s, "image": name, "height": hr.shape[0], "width": hr.shape[1],
                          "scale": data.scale}
                         for split, data in splits.items()
                         for s, name, hr in zip(data.sets, data.names, data.hr, strict=True)])


def prepare_sr(task: str, params: Params, values: dict, outs: list[Path]) -> None:
    cfg = params.data[task]
    splits = dict(zip(("train", "val", "test"), load_sr_images(params, task), strict=True))
    with tracking.stage_run("prepare", values, [], task=task) as run_:
        for path, split in zip(outs[:3], splits.values(), strict=True):
            srdata.save_sr_set(path, split, cfg.source)
        save_table(outs[3], sr_manifest(splits))
        run_.log_metrics({f"{name}_images": len(split) for name, split in splits.items()})
        run_.log_outputs(outputs_exist(outs))
