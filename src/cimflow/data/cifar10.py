"""CIFAR-10 from either of its two common on-disk layouts.

``load_cifar10_folder`` reads one image file per sample (root/{train,test}/<class>/*),
the layout of the real copy here; ``load_cifar10_binary`` reads the official
cifar-10-batches-bin release. The official Python release is deliberately not
supported: it is pickled, and nothing here unpickles.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cimflow.data.split import DataError, Split

SIZE = 32
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
STANDARD_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_RECORD = 1 + 3 * SIZE * SIZE  # label byte, then R, G and B planes, each 32x32 row-major
_TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_TEST_BATCH = "test_batch.bin"


def _class_dirs(folder: Path) -> dict[str, Path]:
    """Map class name to sub-folder; a missing or class-less folder is an error."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    dirs = {d.name: d for d in folder.iterdir() if d.is_dir()}
    if not dirs:
        raise DataError(f"{folder}: no class sub-folders")
    return dirs


def _decode(path: Path) -> np.ndarray:
    """Decode one image to RGB (32, 32, 3) uint8, naming the file on any failure."""
    try:
        with Image.open(path) as im:
            if im.size != (SIZE, SIZE):
                raise DataError(f"{path}: image is {im.size[0]}x{im.size[1]}, expected {SIZE}x{SIZE}")
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from exc


def _read_image_split(folder: Path, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image of ``folder`` in sorted (class, file name) order."""
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        class_dir = folder / name
        found = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise DataError(f"{class_dir}: no .jpg/.jpeg/.png images")
        files += found
        labels += [label] * len(found)
    images = np.empty((len(files), SIZE, SIZE, 3), dtype=np.uint8)
    # PIL releases the GIL while decoding, so threads overlap files (about 1.25x on 2 cores);
    # map() yields results in submission order, keeping the output deterministic.
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        decoded = pool.map(_decode, files)
        for i, pixels in enumerate(tqdm(decoded, total=len(files), desc=f"reading {folder}", unit="img")):
            images[i] = pixels
    finally:
        pool.shutdown(cancel_futures=True)  # on a bad file, stop instead of decoding the rest
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), np.asarray(labels, dtype=np.int64)


def load_cifar10_folder(root: Path) -> tuple[Split, Split]:
    """Return (train, test) from root/{train,test}/<class>/* as uint8 (N, 3, 32, 32).

    Class names are the sorted train sub-folder names; test must have the same set,
    since a silently missing class would shift every label after it.
    """
    root = Path(root)
    train_dirs = _class_dirs(root / "train")
    test_dirs = _class_dirs(root / "test")
    if set(train_dirs) != set(test_dirs):
        only_train = sorted(set(train_dirs) - set(test_dirs))
        only_test = sorted(set(test_dirs) - set(train_dirs))
        raise DataError(
            f"{root}: class folders differ between train and test "
            f"(only in train: {only_train}, only in test: {only_test})"
        )
    names = tuple(sorted(train_dirs))
    return (
        Split(*_read_image_split(root / "train", names), names),
        Split(*_read_image_split(root / "test", names), names),
    )


def _read_batches(paths: list[Path], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse fixed-size binary records of ``paths`` into (N, 3, 32, 32) images and labels."""
    images, labels = [], []
    for path in paths:
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise DataError(f"{path}: cannot read CIFAR-10 batch ({exc})") from exc
        if raw.size == 0 or raw.size % _RECORD:
            raise DataError(f"{path}: size {raw.size} bytes is not a positive multiple of the {_RECORD}-byte record")
        records = raw.reshape(-1, _RECORD)
        if records[:, 0].max() >= n_classes:
            raise DataError(f"{path}: label byte {records[:, 0].max()} >= {n_classes}")
        labels.append(records[:, 0].astype(np.int64))
        images.append(records[:, 1:].reshape(-1, 3, SIZE, SIZE))
    return np.concatenate(images), np.concatenate(labels)


def _class_names(folder: Path) -> tuple[str, ...]:
    """Read batches.meta.txt (one name per line), or fall back to the standard ten names."""
    meta = folder / "batches.meta.txt"
    if not meta.exists():
        return STANDARD_NAMES
    try:
        names = tuple(line.strip() for line in meta.read_text().splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{meta}: cannot read class names ({exc})") from exc
    if len(names) != len(STANDARD_NAMES):
        raise DataError(f"{meta}: {len(names)} class names, expected {len(STANDARD_NAMES)}")
    return names


def load_cifar10_binary(root: Path) -> tuple[Split, Split]:
    """Return the official (train, test) splits of cifar-10-batches-bin as uint8 (N, 3, 32, 32).

    ``root`` may be the cifar-10-batches-bin folder itself or the folder holding it,
    matching both how the archive unpacks and how people point at it.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-bin" if (root / "cifar-10-batches-bin").is_dir() else root
    names = _class_names(folder)
    train = _read_batches([folder / b for b in _TRAIN_BATCHES], len(names))
    test = _read_batches([folder / _TEST_BATCH], len(names))
    return Split(*train, names), Split(*test, names)
