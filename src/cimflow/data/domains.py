"""Domain pairs for unsupervised domain adaptation: a labeled source, an unlabeled target.

Each loader returns a :class:`DomainPair`: source train and test (labeled), target train
(whose labels the pair carries only so the loader can check them; :meth:`unlabeled` drops
them before anything is written for training) and target test (labeled, read only by
evaluation). The target is split into train and test rather than evaluated on the images
it adapted to (the transductive Office-31 protocol), so no test image is ever seen.

* ``mnist_usps``: MNIST's 10k t10k images (the only MNIST here) as the source, the
  official USPS train/test as the target; both reach LeNet-5 at 28x28 through the
  preprocessor (USPS is stored at its native 16x16).
* ``digits_shift``: scikit-learn's digits, split in half by class; the target half is
  redrawn with a deterministic transform (see :func:`shift_digits`).
* ``office_folder``: an Office-31-layout tree, ``root/<domain>/[images/]<class>/<image>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cimflow.data.digits import digits_arrays
from cimflow.data.mnist import load_mnist_idx
from cimflow.data.split import DataError, Split, stratified_split
from cimflow.data.usps import load_usps_h5

UNLABELED = -1
"""The label a target training image carries once its true label is dropped."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True, eq=False)
class DomainPair:
    source_train: Split
    source_test: Split
    target_train: Split
    target_test: Split

    def __post_init__(self) -> None:
        splits = {"source train": self.source_train, "source test": self.source_test,
                  "target train": self.target_train, "target test": self.target_test}
        names = {split.class_names for split in splits.values()}
        channels = {split.images.shape[1] for split in splits.values()}
        if len(names) != 1 or len(channels) != 1:
            raise DataError("a domain pair needs the same classes and channel count in every split; got "
                            + ", ".join(f"{k}: {len(s.class_names)} classes, {s.images.shape[1]} channels"
                                        for k, s in splits.items()))

    def unlabeled(self) -> Split:
        """The target training images with every label replaced by :data:`UNLABELED`."""
        labels = np.full(len(self.target_train.labels), UNLABELED, dtype=np.int64)
        return Split(self.target_train.images, labels, self.target_train.class_names)


def load_mnist_usps(mnist_folder: Path, usps_file: Path, test_fraction: float, seed: int) -> DomainPair:
    """MNIST (t10k, stratified train/test) -> USPS (official 7,291 / 2,007)."""
    source_train, source_test = load_mnist_idx(mnist_folder, test_fraction, seed)
    target_train, target_test = load_usps_h5(usps_file)
    return DomainPair(source_train, source_test, target_train, target_test)


def shift_digits(images: np.ndarray) -> np.ndarray:
    """The digits_shift target look: strokes thickened (2x2 grey dilation), then the digit
    rotated by 15 degrees about the centre (bilinear). Deterministic, so the target set is
    the same on every machine. A logistic regression on raw pixels fit on the source scores
    0.96 on held-out source digits and 0.16 on shifted ones (split seed 0), so the shift is
    real; how much of it a CNN and DANN bridge is for the teacher stage to measure."""
    from scipy import ndimage  # imported here: only this task needs it

    out = np.empty_like(images)
    for i, image in enumerate(images[:, 0].astype(np.float64)):
        thick = ndimage.grey_dilation(image, size=(2, 2))
        turned = ndimage.rotate(thick, 15.0, reshape=False, order=1, mode="constant", cval=0.0)
        out[i, 0] = np.rint(np.clip(turned, 0.0, 255.0)).astype(np.uint8)
    return out


def load_digits_shift(test_fraction: float, seed: int) -> DomainPair:
    """scikit-learn digits: one half (by class) the source, the other half shifted the target;
    each half split into train and test by ``test_fraction``."""
    images, labels, names = digits_arrays()
    (src_x, src_y), (tgt_x, tgt_y) = stratified_split(images, labels, 0.5, seed)
    return _split_domains(Split(src_x, src_y, names), Split(shift_digits(tgt_x), tgt_y, names), test_fraction,
                          (seed + 2, seed + 3))


def load_image_folder(folder: Path, size: int, classes: tuple[str, ...] | None = None) -> Split:
    """One domain's ``<class>/<image>`` tree as uint8 RGB (N, 3, size, size), classes sorted
    by name (or ``classes``, which the folder must match exactly)."""
    from PIL import Image, UnidentifiedImageError  # imported here: only image-folder tasks need it

    folder = Path(folder)
    if (folder / "images").is_dir():
        folder = folder / "images"  # the Office-31 archive's own layout
    if not folder.is_dir():
        raise DataError(f"{folder}: domain folder not found")
    found = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir()))
    if classes is not None and found != classes:
        raise DataError(f"{folder}: class folders {list(found)} differ from the other domain's {list(classes)}")
    if not found:
        raise DataError(f"{folder}: no class folders")
    images, labels = [], []
    for index, name in enumerate(found):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder / name}: no images ({', '.join(IMAGE_SUFFIXES)})")
        for file in files:
            try:
                with Image.open(file) as image:
                    rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"{file}: cannot decode image ({exc})") from exc
            images.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
            labels.append(index)
    return Split(np.stack(images), np.asarray(labels, dtype=np.int64), found)


def load_office_folder(root: Path, source: str, target: str, size: int, test_fraction: float,
                       seed: int) -> DomainPair:
    """Two domains of an Office-31-layout tree (e.g. ``amazon`` -> ``webcam``), each split into
    train and test by class."""
    root = Path(root)
    source_all = load_image_folder(root / source, size)
    target_all = load_image_folder(root / target, size, source_all.class_names)
    return _split_domains(source_all, target_all, test_fraction, (seed, seed + 1))


def _split_domains(source: Split, target: Split, test_fraction: float, seeds: tuple[int, int]) -> DomainPair:
    """Each domain split into train and test by class, with its own seed."""
    halves = []
    for split, seed in zip((source, target), seeds):
        (tr_x, tr_y), (te_x, te_y) = stratified_split(split.images, split.labels, test_fraction, seed)
        halves += [Split(tr_x, tr_y, split.class_names), Split(te_x, te_y, split.class_names)]
    return DomainPair(*halves)
