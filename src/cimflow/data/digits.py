"""scikit-learn's embedded 8x8 digits: the default data set, needing no files at all."""

from __future__ import annotations

import numpy as np

from cimflow.data.split import Split, stratified_split


def digits_arrays() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """All 1,797 digits as uint8 (N, 1, 8, 8) in 0..255, their labels and class names."""
    # Imported here: sklearn.datasets costs about a second, and most runs never call this.
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are counts 0..16; rescale to the 0..255 range every other loader uses.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    return images, bunch.target.astype(np.int64), tuple(str(n) for n in bunch.target_names)


def load_digits(test_fraction: float, seed: int) -> tuple[Split, Split]:
    """Return (train, test) of the 1,797 digits as uint8 (N, 1, 8, 8), split by class."""
    images, labels, names = digits_arrays()
    (tr_x, tr_y), (te_x, te_y) = stratified_split(images, labels, test_fraction, seed)
    return Split(tr_x, tr_y, names), Split(te_x, te_y, names)
