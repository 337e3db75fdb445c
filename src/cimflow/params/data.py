"""Schema of params.yaml ``data.<task>``: where a task's images come from and how they split."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cimflow.schema import Fraction, Seed, StrictModel


class _Split(StrictModel):
    """How a source's training data is carved: a stratified validation part, seeded.

    ``split_seed`` is the data's own seed, apart from the training ``seeds``: every
    seed of a method trains and is tested on the same images, so seeds pair."""

    val_fraction: Fraction
    split_seed: Seed


class SklearnDigits(_Split):
    source: Literal["sklearn_digits"]
    test_fraction: Fraction


class MnistIdx(_Split):
    source: Literal["mnist_idx"]
    path: str
    test_fraction: Fraction


class UspsH5(_Split):
    source: Literal["usps_h5"]
    path: str


class Cifar10Folder(_Split):
    source: Literal["cifar10_folder"]
    path: str


class Cifar10Binary(_Split):
    source: Literal["cifar10_binary"]
    path: str


DataSource = Annotated[
    SklearnDigits | MnistIdx | UspsH5 | Cifar10Folder | Cifar10Binary,
    Field(discriminator="source"),
]

SOURCES = (SklearnDigits, MnistIdx, UspsH5, Cifar10Folder, Cifar10Binary)
