"""Super-resolution image sets: high-resolution originals and the low-resolution inputs
the protocol makes from them, held together with each image's name and test set.

Every image is stored as uint8 RGB (grey images are repeated over three channels); the
networks see the Y channel (cimflow.sr.metrics.rgb_to_y), as SRCNN, FSRCNN and ESPCN do
and as the published tables score. Training images and test sets come from separate
folders (or separate embedded photographs), so no test image can reach training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cimflow.artifacts import ArtifactError, load_tensors, save_tensors
from cimflow.data.split import DataError
from cimflow.sr.inference import y_tensor
from cimflow.sr.metrics import modcrop
from cimflow.sr.resize import imresize

SR_FORMAT = "cimflow-sr-data-v1"
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

EMBEDDED_TRAIN = ("rocket", "stereo_motorcycle", "brick", "grass", "gravel", "coins", "clock", "moon",
                  "immunohistochemistry", "page", "sklearn/china.jpg", "sklearn/flower.jpg")
"""Photographs inside scikit-image (``skimage.data``) and scikit-learn's sample images."""
EMBEDDED_TEST = ("astronaut", "chelsea", "coffee", "camera")
EMBEDDED_SET = "embedded"


@dataclass(frozen=True, eq=False)
class SrSet:
    """Aligned pairs: ``hr[i]`` (H, W, 3) uint8 cropped to a multiple of ``scale`` and
    ``lr[i]`` its MATLAB-bicubic downscale (H/scale, W/scale, 3); ``sets[i]`` names the
    test set (or ``train``/``val``) image i belongs to."""

    hr: tuple[np.ndarray, ...]
    lr: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    sets: tuple[str, ...]
    scale: int

    def __post_init__(self) -> None:
        if not (len(self.hr) == len(self.lr) == len(self.names) == len(self.sets)):
            raise ValueError("hr, lr, names and sets must have one entry per image")
        for hr, lr, name in zip(self.hr, self.lr, self.names, strict=True):
            if hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
                raise ValueError(f"{name}: HR image must be uint8 (H, W, 3), got {hr.dtype} {hr.shape}")
            if lr.shape != (hr.shape[0] // self.scale, hr.shape[1] // self.scale, 3) or hr.shape[0] % self.scale:
                raise ValueError(f"{name}: LR {lr.shape} is not HR {hr.shape} / {self.scale}")

    def __len__(self) -> int:
        return len(self.hr)

    def subset(self, indices: np.ndarray | list[int], set_name: str | None = None) -> SrSet:
        keep = [int(i) for i in indices]
        sets = tuple(set_name or self.sets[i] for i in keep)
        return SrSet(tuple(self.hr[i] for i in keep), tuple(self.lr[i] for i in keep),
                     tuple(self.names[i] for i in keep), sets, self.scale)


def as_rgb(image: np.ndarray, name: str) -> np.ndarray:
    """uint8 (H, W, 3): grey repeated, alpha dropped, booleans and floats in [0, 1] scaled."""
    image = np.asarray(image)
    if image.dtype == bool or image.dtype.kind == "f":
        image = np.clip(np.floor(image.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)
    if image.dtype != np.uint8:
        raise DataError(f"{name}: expected 8-bit pixels, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise DataError(f"{name}: expected a grey or RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


def make_pairs(images: list[tuple[str, np.ndarray]], set_name: str, scale: int) -> SrSet:
    """The protocol's pairs: modcrop the HR image to the scale, downscale by MATLAB bicubic."""
    hrs, lrs = [], []
    for name, image in images:
        hr = modcrop(image, scale)
        if min(hr.shape[:2]) < 2 * scale:
            raise DataError(f"{name}: image {image.shape[:2]} is too small for scale {scale}")
        hrs.append(hr)
        lrs.append(imresize(hr, scale=1.0 / scale))
    return SrSet(tuple(hrs), tuple(lrs), tuple(n for n, _ in images), (set_name,) * len(images), scale)


def load_folder(folder: Path) -> list[tuple[str, np.ndarray]]:
    """Every image file in ``folder`` (sorted by name) as uint8 RGB."""
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    images = []
    for path in files:
        try:
            with Image.open(path) as img:
                images.append((path.stem, as_rgb(np.asarray(img.convert("RGB")), str(path))))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from None
    return images


def load_embedded(names: tuple[str, ...]) -> list[tuple[str, np.ndarray]]:
    """The named photographs shipped inside scikit-image / scikit-learn."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    images = []
    for name in names:
        if name.startswith("sklearn/"):
            image = load_sample_image(name.removeprefix("sklearn/"))
        else:
            image = getattr(skimage.data, name)()
            image = image[0] if isinstance(image, tuple) else image  # stereo pairs: the left view
        images.append((name.replace("/", "_").removesuffix(".jpg"), as_rgb(image, name)))
    return images


def hold_out(images: list[tuple[str, np.ndarray]], fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): ``round(fraction * n)`` whole images (at least one) chosen by ``seed``."""
    n_val = max(1, round(fraction * len(images)))
    if n_val >= len(images):
        raise DataError(f"val_fraction {fraction} leaves no training image out of {len(images)}")
    chosen = set(np.random.default_rng(seed + 1).permutation(len(images))[:n_val].tolist())
    return ([im for i, im in enumerate(images) if i not in chosen], [im for i, im in enumerate(images) if i in chosen])


def save_sr_set(path: Path, data: SrSet, source: str) -> None:
    tensors = {}
    for i, (hr, lr) in enumerate(zip(data.hr, data.lr, strict=True)):
        tensors[f"hr/{i:05d}"], tensors[f"lr/{i:05d}"] = hr, lr
    save_tensors(path, tensors, {"format": SR_FORMAT, "names": json.dumps(list(data.names)),
                                 "sets": json.dumps(list(data.sets)), "scale": str(data.scale), "source": source})


def load_sr_set(path: Path) -> SrSet:
    tensors, meta = load_tensors(path)
    if meta.get("format") != SR_FORMAT:
        raise ArtifactError(f"{path}: not a cimflow super-resolution data file")
    try:
        names, sets, scale = json.loads(meta["names"]), json.loads(meta["sets"]), int(meta["scale"])
        return SrSet(tuple(tensors[f"hr/{i:05d}"] for i in range(len(names))),
                     tuple(tensors[f"lr/{i:05d}"] for i in range(len(names))), tuple(names), tuple(sets), scale)
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: malformed super-resolution data ({exc})") from exc


CALIBRATION_PATCH = 32
"""LR pixels per side of a calibration patch (int8 activation ranges, ADC full scales)."""


def calibration_patches(data: SrSet, count: int, seed: int, size: int = CALIBRATION_PATCH) -> torch.Tensor:
    """``count`` seeded LR patches (count, 1, size, size) of Y / 255, the network's input:
    the image drawn in proportion to its area, the position uniform; an image smaller than
    ``size`` shrinks every patch to its side."""
    size = min(size, *(min(lr.shape[:2]) for lr in data.lr))
    planes = [y_tensor(lr)[0, 0].numpy() for lr in data.lr]
    area = np.array([p.size for p in planes], dtype=np.float64)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(planes), size=count, p=area / area.sum())
    patches = np.empty((count, 1, size, size), dtype=np.float32)
    for n, i in enumerate(chosen):
        h, w = planes[i].shape
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        patches[n, 0] = planes[i][y : y + size, x : x + size]
    return torch.from_numpy(patches)
