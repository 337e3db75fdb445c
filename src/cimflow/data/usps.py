"""USPS digits from the common HDF5 packaging (groups train/test, datasets data/target).

The official 7,291/2,007 split is kept: it is what published USPS results use.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from cimflow.data.split import DataError, Split

CLASS_NAMES = tuple(str(d) for d in range(10))


def _read_split(h5: h5py.File, path: Path, group: str) -> Split:
    """Read ``group``/data (N x 256 in [0, 1]) and ``group``/target (N) into a Split."""
    arrays = {}
    for name in ("data", "target"):
        key = f"{group}/{name}"
        node = h5.get(key)
        if not isinstance(node, h5py.Dataset):
            raise DataError(f"{path}: missing dataset '{key}'")
        arrays[name] = node[()]
    data, target = arrays["data"], arrays["target"]
    if data.ndim != 2 or data.shape[1] != 256 or target.shape != (data.shape[0],):
        raise DataError(
            f"{path}: '{group}/data' {data.shape} and '{group}/target' {target.shape}, expected (N, 256) and (N,)"
        )
    labels = target.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DataError(f"{path}: '{group}/target' holds labels outside 0..9")
    images = np.rint(np.clip(data, 0.0, 1.0) * 255.0).astype(np.uint8).reshape(-1, 1, 16, 16)
    return Split(images, labels, CLASS_NAMES)


def load_usps_h5(file: Path) -> tuple[Split, Split]:
    """Return the official (train, test) USPS splits as uint8 (N, 1, 16, 16)."""
    file = Path(file)
    try:
        with h5py.File(file, "r") as h5:
            return _read_split(h5, file, "train"), _read_split(h5, file, "test")
    except OSError as exc:
        raise DataError(f"{file}: cannot read HDF5 file ({exc})") from exc
