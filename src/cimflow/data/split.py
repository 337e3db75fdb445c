"""The container every loader returns, the error they raise, and a reproducible split.

Loaders differ in file format only; downstream stages see one shape of data
(``Split``) and one failure type (``DataError``) whose message names the bad input, so
a broken data set is diagnosed from the log line alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimflow.errors import CimflowError


class DataError(CimflowError):
    """Input data is missing, unreadable or malformed; the message names the file or folder."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays element-wise has no single truth value
class Split:
    """One split of an image classification set: uint8 (N, C, H, W) images, int64 labels."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        # Fail at construction, not three stages later, if a loader breaks the contract.
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[1] not in (1, 3):
            raise ValueError(f"images must be uint8 (N, 1|3, H, W), got {self.images.dtype} {self.images.shape}")
        if self.labels.dtype != np.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} {self.labels.shape}"
            )


def stratified_split(
    images: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out ``round(test_fraction * n_c)`` samples of every class c, chosen by ``seed``.

    Per-class selection keeps class proportions in both halves; sorting the chosen
    indices keeps the original order, so the same seed gives byte-identical arrays.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_test = round(test_fraction * len(members))
        is_test[rng.permutation(members)[:n_test]] = True
    return (images[~is_test], labels[~is_test]), (images[is_test], labels[is_test])


def carve_validation(train: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """(train, validation) from a training split: stratified, and seeded apart from the
    test split's draw so that changing the validation size leaves the test set alone."""
    (tr_x, tr_y), (va_x, va_y) = stratified_split(train.images, train.labels, val_fraction, seed + 1)
    return Split(tr_x, tr_y, train.class_names), Split(va_x, va_y, train.class_names)
