"""Domain pairs: labeled source, unlabeled target train, labeled target test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cimflow.data.domains import (
    UNLABELED,
    DomainPair,
    load_digits_shift,
    load_image_folder,
    load_mnist_usps,
    load_office_folder,
    shift_digits,
)
from cimflow.data.split import DataError, Split

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_digits_shift_is_deterministic_disjoint_and_shifted():
    a, b = load_digits_shift(0.25, seed=0), load_digits_shift(0.25, seed=0)
    for name in ("source_train", "source_test", "target_train", "target_test"):
        assert np.array_equal(getattr(a, name).images, getattr(b, name).images)
    sizes = [len(getattr(a, n).labels) for n in ("source_train", "source_test", "target_train", "target_test")]
    assert sum(sizes) == 1797
    # the target is drawn differently: thicker strokes, so it is brighter on average
    assert a.target_train.images.mean() > a.source_train.images.mean() + 20
    assert set(np.unique(a.target_test.labels)) == set(range(10))


def test_unlabeled_target_carries_no_labels():
    pair = load_digits_shift(0.25, seed=1)
    unlabeled = pair.unlabeled()
    assert np.all(unlabeled.labels == UNLABELED)
    assert np.array_equal(unlabeled.images, pair.target_train.images)


def test_shift_transform_on_a_known_case():
    dot = np.zeros((1, 1, 8, 8), dtype=np.uint8)
    dot[0, 0, 4, 4] = 255  # a dot at the centre: dilation makes it 2x2, the rotation blurs its edges
    shifted = shift_digits(dot)[0, 0]
    assert shifted[4, 4] > 100 and shifted[3, 3] > 100
    assert shifted[0].max() == 0 and shifted[:, 0].max() == 0


def _write_domain(root: Path, domain: str, classes: dict[str, int], colour: int, office_layout: bool) -> None:
    base = root / domain / "images" if office_layout else root / domain
    for index, (name, count) in enumerate(classes.items()):
        (base / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.full((12, 10, 3), (colour + 40 * index + i) % 256, dtype=np.uint8)
            Image.fromarray(pixels).save(base / name / f"frame_{i:04d}.{'jpg' if i % 2 else 'png'}")


def test_office_layout_folder_loader(tmp_path):
    _write_domain(tmp_path, "amazon", {"back_pack": 4, "bike": 4}, 10, office_layout=True)
    _write_domain(tmp_path, "webcam", {"back_pack": 4, "bike": 4}, 100, office_layout=False)
    pair = load_office_folder(tmp_path, "amazon", "webcam", 16, 0.25, seed=0)
    assert pair.source_train.class_names == ("back_pack", "bike")
    assert pair.source_train.images.shape[1:] == (3, 16, 16)
    assert len(pair.source_train.labels) + len(pair.source_test.labels) == 8
    assert len(pair.target_test.labels) == 2


def test_image_folder_errors_name_the_bad_input(tmp_path):
    _write_domain(tmp_path, "amazon", {"back_pack": 2, "bike": 2}, 10, office_layout=False)
    _write_domain(tmp_path, "dslr", {"back_pack": 2, "mug": 2}, 10, office_layout=False)
    with pytest.raises(DataError, match="differ"):
        load_office_folder(tmp_path, "amazon", "dslr", 16, 0.5, seed=0)
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "caltech", 16)
    (tmp_path / "amazon" / "bike" / "frame_9999.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="frame_9999.jpg"):
        load_image_folder(tmp_path / "amazon", 16)


def test_domain_pair_refuses_mismatched_classes():
    ten = Split(np.zeros((2, 1, 4, 4), np.uint8), np.zeros(2, np.int64), tuple("0123456789"))
    two = Split(np.zeros((2, 1, 4, 4), np.uint8), np.zeros(2, np.int64), ("a", "b"))
    with pytest.raises(DataError, match="same classes"):
        DomainPair(ten, ten, ten, two)


@pytest.mark.realdata
def test_real_mnist_usps():
    if not (REAL_DATA / "mnist").is_dir() or not (REAL_DATA / "usps" / "usps.h5").is_file():
        pytest.skip(f"real data not found under {REAL_DATA}")
    pair = load_mnist_usps(REAL_DATA / "mnist", REAL_DATA / "usps" / "usps.h5", 0.1, seed=0)
    assert len(pair.source_train.labels) + len(pair.source_test.labels) == 10_000
    assert pair.target_train.images.shape == (7291, 1, 16, 16)
    assert pair.target_test.images.shape == (2007, 1, 16, 16)
