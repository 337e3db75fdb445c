"""Schema of params.yaml ``data.<task>``: where a task's images come from and how they split.

The source also fixes the task's kind: a classification task has one labeled domain; a
domain-adaptation task has a labeled source, an unlabeled target train split and a labeled
target test split (cimflow.data.domains), and runs the methods made for that kind."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from cimflow.methods import CLASSIFICATION, DOMAIN_ADAPTATION, SUPER_RESOLUTION
from cimflow.schema import Fraction, Seed, StrictModel


class _Split(StrictModel):
    """How a source's training data is carved: a stratified validation part, seeded.

    ``split_seed`` is the data's own seed, apart from the training ``seeds``: every
    seed of a method trains and is tested on the same images, so seeds pair."""

    val_fraction: Fraction
    split_seed: Seed
    kind: ClassVar[str] = CLASSIFICATION


class _DomainPair(_Split):
    """A source and a target domain. ``val_fraction`` carves the source validation split and,
    from the unlabeled target train split, a target validation split (for label-free proxies
    only); ``test_fraction`` splits each domain the source does not split itself."""

    kind: ClassVar[str] = DOMAIN_ADAPTATION


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


class DigitsShift(_DomainPair):
    source: Literal["digits_shift"]
    test_fraction: Fraction


class MnistUsps(_DomainPair):
    source: Literal["mnist_usps"]
    mnist_path: str
    usps_path: str
    test_fraction: Fraction  # of MNIST, held out as the source test split; USPS keeps its official one


class OfficeFolder(_DomainPair):
    source: Literal["office_folder"]
    path: str
    source_domain: str
    target_domain: str
    image_size: Annotated[int, Field(ge=8, le=512)]
    test_fraction: Fraction


class _SuperResolution(_Split):
    """High-resolution images; the SR protocol makes the low-resolution inputs from them
    (modcrop to the scale, MATLAB bicubic at 1/scale: cimflow.sr.data.make_pairs).
    ``val_fraction`` of the training images (whole images, seeded) validate; test images
    are only evaluated."""

    scale: Literal[2, 3, 4]
    kind: ClassVar[str] = SUPER_RESOLUTION


class SrEmbedded(_SuperResolution):
    """Photographs that ship inside scikit-image and scikit-learn (cimflow.sr.data.EMBEDDED)."""

    source: Literal["sr_embedded"]


class SrFolders(_SuperResolution):
    """Folders of images: training folders (e.g. T91 and BSD200) and named test sets (Set5, Set14, BSD100)."""

    source: Literal["sr_folders"]
    train: Annotated[list[str], Field(min_length=1)]
    test: Annotated[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")], str], Field(min_length=1)]


DataSource = Annotated[
    SklearnDigits | MnistIdx | UspsH5 | Cifar10Folder | Cifar10Binary | DigitsShift | MnistUsps | OfficeFolder
    | SrEmbedded | SrFolders,
    Field(discriminator="source"),
]

SOURCES = (SklearnDigits, MnistIdx, UspsH5, Cifar10Folder, Cifar10Binary, DigitsShift, MnistUsps, OfficeFolder,
           SrEmbedded, SrFolders)
