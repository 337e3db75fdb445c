"""Data-source loaders: tiny samples built in the standard layouts, plus the real copies.

The synthetic samples check formats, round-trips and that every kind of bad input
raises DataError naming the file; the ``realdata`` tests check the loaders against
../shared/data and are skipped when that folder is absent.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from cimflow.data.cifar10 import load_cifar10_binary, load_cifar10_folder
from cimflow.data.digits import load_digits
from cimflow.data.mnist import load_mnist_idx
from cimflow.data.split import DataError, Split, stratified_split
from cimflow.data.usps import load_usps_h5

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _needs_real(sub: str) -> Path:
    path = REAL_DATA / sub
    if not path.exists():
        pytest.skip(f"real data not present at {path}")
    return path


# ---------------------------------------------------------------- stratified_split


def _toy(n_per_class: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in enumerate(n_per_class)])
    labels = np.random.default_rng(0).permutation(labels)
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1)
    return images, labels


def test_stratified_split_is_deterministic_and_seed_dependent() -> None:
    images, labels = _toy((30, 17, 9))
    a = stratified_split(images, labels, 0.3, seed=7)
    b = stratified_split(images, labels, 0.3, seed=7)
    c = stratified_split(images, labels, 0.3, seed=8)
    for x, y in zip((*a[0], *a[1]), (*b[0], *b[1]), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1][0], c[1][0])


def test_stratified_split_preserves_proportions_and_order() -> None:
    images, labels = _toy((30, 17, 9, 1))
    (tr_x, tr_y), (te_x, te_y) = stratified_split(images, labels, 0.25, seed=3)
    for cls, n in enumerate((30, 17, 9, 1)):
        assert abs(np.sum(te_y == cls) - 0.25 * n) <= 1
        assert np.sum(tr_y == cls) + np.sum(te_y == cls) == n
    # images encode their original index: the halves partition it and keep its order
    tr_idx, te_idx = tr_x.ravel().astype(int), te_x.ravel().astype(int)
    assert sorted(np.concatenate([tr_idx, te_idx])) == list(range(len(labels)))
    assert np.all(np.diff(tr_idx) > 0) and np.all(np.diff(te_idx) > 0)
    np.testing.assert_array_equal(labels[te_idx], te_y)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_stratified_split_rejects_bad_fraction(fraction: float) -> None:
    images, labels = _toy((4, 4))
    with pytest.raises(ValueError):
        stratified_split(images, labels, fraction, seed=0)


def test_split_rejects_wrong_dtypes() -> None:
    with pytest.raises(ValueError):
        Split(np.zeros((2, 1, 4, 4), np.float32), np.zeros(2, np.int64), ("a",))
    with pytest.raises(ValueError):
        Split(np.zeros((2, 1, 4, 4), np.uint8), np.zeros(3, np.int64), ("a",))


# ---------------------------------------------------------------- digits


def test_load_digits() -> None:
    train, test = load_digits(0.2, seed=1)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64 and len(train.images) + len(test.images) == 1797
    assert train.class_names == tuple(str(d) for d in range(10))
    assert train.images.max() == 255 and train.images.min() == 0
    assert abs(len(test.images) - 0.2 * 1797) <= 10
    again = load_digits(0.2, seed=1)[1]
    np.testing.assert_array_equal(test.images, again.images)


# ---------------------------------------------------------------- MNIST IDX


def _write_idx(path: Path, magic: int, array: np.ndarray, dims: tuple[int, ...] | None = None) -> None:
    header = struct.pack(f">{1 + array.ndim}I", magic, *(dims or array.shape))
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def _mnist_sample(folder: Path, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", 2051, images)
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", 2049, labels)
    return images, labels


def test_mnist_round_trip(tmp_path: Path) -> None:
    images, labels = _mnist_sample(tmp_path)
    train, test = load_mnist_idx(tmp_path, 0.25, seed=0)
    assert train.images.shape == (30, 1, 28, 28) and test.images.shape == (10, 1, 28, 28)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert np.bincount(test.labels).tolist() == [1] * 10
    # every returned image is the written image with the same label
    for split in (train, test):
        for img, lab in zip(split.images, split.labels, strict=True):
            idx = np.flatnonzero((images == img[0]).all(axis=(1, 2)))
            assert len(idx) == 1 and labels[idx[0]] == lab


def test_mnist_truncated_gzip(tmp_path: Path) -> None:
    _mnist_sample(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist_idx(tmp_path, 0.25, seed=0)


def test_mnist_wrong_magic(tmp_path: Path) -> None:
    _mnist_sample(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2051, np.arange(40) % 10)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*magic"):
        load_mnist_idx(tmp_path, 0.25, seed=0)


def test_mnist_header_disagrees_with_payload(tmp_path: Path) -> None:
    _mnist_sample(tmp_path)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, np.zeros((40, 28, 28)), dims=(41, 28, 28))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist_idx(tmp_path, 0.25, seed=0)


def test_mnist_count_mismatch_and_missing_file(tmp_path: Path) -> None:
    _mnist_sample(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, np.arange(39) % 10)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist_idx(tmp_path, 0.25, seed=0)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist_idx(tmp_path, 0.25, seed=0)


# ---------------------------------------------------------------- USPS HDF5


def _write_usps(path: Path, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    arrays = {}
    with h5py.File(path, "w") as h5:
        for group, n in (("train", n_train), ("test", n_test)):
            arrays[group] = rng.uniform(-0.1, 1.1, (n, 256)).astype(np.float32)
            h5[f"{group}/data"] = arrays[group]
            h5[f"{group}/target"] = (np.arange(n) % 10).astype(np.int32)
    return arrays


def test_usps_round_trip(tmp_path: Path) -> None:
    arrays = _write_usps(tmp_path / "usps.h5")
    train, test = load_usps_h5(tmp_path / "usps.h5")
    assert train.images.shape == (12, 1, 16, 16) and test.images.shape == (5, 1, 16, 16)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    expected = np.round(np.clip(arrays["test"], 0, 1) * 255).astype(np.uint8).reshape(5, 1, 16, 16)
    np.testing.assert_array_equal(test.images, expected)
    assert test.labels.tolist() == [0, 1, 2, 3, 4]


def test_usps_missing_dataset(tmp_path: Path) -> None:
    path = tmp_path / "usps.h5"
    _write_usps(path)
    with h5py.File(path, "a") as h5:
        del h5["test/target"]
    with pytest.raises(DataError, match=r"usps\.h5.*test/target"):
        load_usps_h5(path)


def test_usps_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "usps.h5"
    _write_usps(path)
    with h5py.File(path, "a") as h5:
        del h5["train/data"]
        h5["train/data"] = np.zeros((12, 255), np.float32)
    with pytest.raises(DataError, match=r"usps\.h5.*train/data"):
        load_usps_h5(path)


def test_usps_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "broken.h5"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(DataError, match=r"broken\.h5"):
        load_usps_h5(path)


# ---------------------------------------------------------------- CIFAR-10 image folder


def _write_image_folder(root: Path, per_class: int = 3) -> dict[Path, np.ndarray]:
    rng = np.random.default_rng(2)
    written = {}
    for split in ("train", "test"):
        for cls in ("dog", "cat"):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                path = root / split / cls / f"{i:04d}.png"
                Image.fromarray(pixels).save(path)
                written[path] = pixels
    return written


def test_cifar_folder_round_trip(tmp_path: Path) -> None:
    written = _write_image_folder(tmp_path)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored: not an image")
    train, test = load_cifar10_folder(tmp_path)
    assert train.class_names == ("cat", "dog")  # sorted, not creation order
    assert train.images.shape == (6, 3, 32, 32) and train.images.dtype == np.uint8
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1] and train.labels.dtype == np.int64
    order = [tmp_path / "test" / c / f"{i:04d}.png" for c in ("cat", "dog") for i in range(3)]
    np.testing.assert_array_equal(test.images, np.stack([written[p].transpose(2, 0, 1) for p in order]))


def test_cifar_folder_greyscale_becomes_rgb(tmp_path: Path) -> None:
    _write_image_folder(tmp_path)
    grey = np.full((32, 32), 77, dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "test" / "cat" / "0000.png")
    test = load_cifar10_folder(tmp_path)[1]
    assert (test.images[0] == 77).all()


def test_cifar_folder_wrong_size(tmp_path: Path) -> None:
    _write_image_folder(tmp_path)
    Image.new("RGB", (32, 31)).save(tmp_path / "train" / "dog" / "0001.png")
    with pytest.raises(DataError, match=r"0001\.png.*32x31"):
        load_cifar10_folder(tmp_path)


def test_cifar_folder_corrupt_image(tmp_path: Path) -> None:
    _write_image_folder(tmp_path)
    (tmp_path / "test" / "dog" / "0002.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(DataError, match=r"0002\.png"):
        load_cifar10_folder(tmp_path)


def test_cifar_folder_missing_class(tmp_path: Path) -> None:
    _write_image_folder(tmp_path)
    for f in (tmp_path / "test" / "dog").iterdir():
        f.unlink()
    (tmp_path / "test" / "dog").rmdir()
    with pytest.raises(DataError, match=r"only in train: \['dog'\]"):
        load_cifar10_folder(tmp_path)


def test_cifar_folder_missing_split(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"/test: folder not found"):
        load_cifar10_folder(tmp_path)


# ---------------------------------------------------------------- CIFAR-10 binary


def _write_batches(folder: Path, per_batch: int = 4, meta: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, per_batch, dtype=np.uint8)
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([labels[:, None], images.reshape(per_batch, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
        written[name] = (images, labels)
    if meta:
        names = [f"class{i}" for i in range(10)]
        (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return written


def test_cifar_binary_round_trip(tmp_path: Path) -> None:
    written = _write_batches(tmp_path / "cifar-10-batches-bin")
    for root in (tmp_path, tmp_path / "cifar-10-batches-bin"):
        train, test = load_cifar10_binary(root)
        assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
        assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
        assert train.class_names == tuple(f"class{i}" for i in range(10))
        np.testing.assert_array_equal(test.images, written["test_batch.bin"][0])
        np.testing.assert_array_equal(test.labels, written["test_batch.bin"][1])
        np.testing.assert_array_equal(train.images[4:8], written["data_batch_2.bin"][0])


def test_cifar_binary_default_names(tmp_path: Path) -> None:
    _write_batches(tmp_path, meta=False)
    train, _ = load_cifar10_binary(tmp_path)
    assert train.class_names[0] == "airplane" and len(train.class_names) == 10


def test_cifar_binary_bad_size(tmp_path: Path) -> None:
    _write_batches(tmp_path)
    with open(tmp_path / "data_batch_3.bin", "ab") as f:
        f.write(b"\x00" * 7)
    with pytest.raises(DataError, match=r"data_batch_3\.bin"):
        load_cifar10_binary(tmp_path)


def test_cifar_binary_missing_batch(tmp_path: Path) -> None:
    _write_batches(tmp_path)
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(DataError, match=r"test_batch\.bin"):
        load_cifar10_binary(tmp_path)


def test_cifar_binary_bad_label(tmp_path: Path) -> None:
    _write_batches(tmp_path)
    raw = bytearray((tmp_path / "data_batch_5.bin").read_bytes())
    raw[3073] = 10  # label byte of the second record
    (tmp_path / "data_batch_5.bin").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"data_batch_5\.bin"):
        load_cifar10_binary(tmp_path)


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_mnist() -> None:
    folder = _needs_real("mnist")
    train, test = load_mnist_idx(folder, 0.2, seed=0)
    assert len(train.images) + len(test.images) == 10_000
    assert train.images.shape[1:] == (1, 28, 28)
    assert set(np.unique(test.labels)) == set(range(10))
    assert abs(len(test.images) - 2000) <= 10


@pytest.mark.realdata
def test_real_usps() -> None:
    path = _needs_real("usps/usps.h5")
    train, test = load_usps_h5(path)
    assert train.images.shape == (7291, 1, 16, 16) and test.images.shape == (2007, 1, 16, 16)
    assert set(np.unique(train.labels)) == set(range(10))
    assert train.images.max() == 255


@pytest.mark.realdata
@pytest.mark.slow
def test_real_cifar10_folder() -> None:
    root = _needs_real("cifar10")
    train, test = load_cifar10_folder(root)
    assert train.images.shape == (50_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.class_names[0] == "airplane" and train.class_names[-1] == "truck"


# ---------------------------------------------------------------- validation split


def test_validation_is_carved_stratified_disjoint_and_repeatable() -> None:
    from cimflow.data.split import Split, carve_validation

    n = 600
    ids = np.arange(n)
    images = np.stack([ids % 256, ids // 256], axis=1).astype(np.uint8).reshape(n, 1, 2, 1)  # unique per sample
    labels = (ids % 3 + (ids % 7 == 0)).astype(np.int64)  # four classes of unequal size
    train = Split(images, labels, ("a", "b", "c", "d"))
    fit, val = carve_validation(train, 0.15, seed=0)
    key = lambda split: {tuple(img.ravel()) for img in split.images}  # noqa: E731
    assert key(fit).isdisjoint(key(val)) and len(key(fit) | key(val)) == n
    for cls in range(4):  # every class keeps its share, to within rounding
        members = int((labels == cls).sum())
        assert abs(int((val.labels == cls).sum()) - 0.15 * members) <= 0.5
    again_fit, again_val = carve_validation(train, 0.15, seed=0)
    np.testing.assert_array_equal(val.images, again_val.images)
    np.testing.assert_array_equal(fit.labels, again_fit.labels)
    assert key(carve_validation(train, 0.15, seed=1)[1]) != key(val)
