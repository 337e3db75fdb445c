"""MNIST from the official gzip IDX files.

Only the 10k ``t10k-*`` files are read (the real copy here has no train files), and
they are split by class, so the same code runs wherever those two files exist.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from cimflow.data.split import DataError, Split, stratified_split

IMAGES_FILE = "t10k-images-idx3-ubyte.gz"
LABELS_FILE = "t10k-labels-idx1-ubyte.gz"
_IMAGES_MAGIC = 2051  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 2049  # unsigned byte, 1 dimension
CLASS_NAMES = tuple(str(d) for d in range(10))


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Decompress and parse one IDX file, checking magic number and exact payload size."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read gzip IDX file ({exc})") from exc
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: {len(raw)} bytes is shorter than the IDX header")
    found, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found}, expected {magic}")
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {len(raw) - header} data bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist_idx(folder: Path, test_fraction: float, seed: int) -> tuple[Split, Split]:
    """Return (train, test) from ``folder``'s t10k files as uint8 (N, 1, 28, 28)."""
    folder = Path(folder)
    images = _read_idx(folder / IMAGES_FILE, _IMAGES_MAGIC, 3)
    labels = _read_idx(folder / LABELS_FILE, _LABELS_MAGIC, 1).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images in {IMAGES_FILE} but {len(labels)} labels in {LABELS_FILE}")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{folder / LABELS_FILE}: label {labels.max()} is not a digit")
    (tr_x, tr_y), (te_x, te_y) = stratified_split(images[:, None, :, :], labels, test_fraction, seed)
    return Split(tr_x, tr_y, CLASS_NAMES), Split(te_x, te_y, CLASS_NAMES)
