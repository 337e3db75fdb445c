"""Load and validate params.yaml, the single configuration.

The schema has no defaults on purpose: DVC tracks values in params.yaml only, so a
value that lived in a schema default would change results without DVC noticing.
Errors name the key path, the bad value and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from cimflow.cim.config import MacroConfig
from cimflow.compress.admm.params import AdmmPruneParams, AdmmQuantizeParams
from cimflow.compress.dynasty.params import DynastyParams
from cimflow.errors import CimflowError
from cimflow.methods import METHODS as METHOD_TABLE
from cimflow.modelref import ModelRef
from cimflow.schema import StrictModel

PARAMS_FILE = Path("params.yaml")
METHODS = tuple(METHOD_TABLE)
ADMM_METHODS = {"admm_prune", "admm_quant", "admm_binary", "magnitude_one_shot", "magnitude_iterative"}


class ParamsError(CimflowError):
    """params.yaml is missing, unparsable or invalid; the message says where and why."""


Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
Seed = Annotated[int, Field(ge=0, lt=2**31)]


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


class _ModelSource(StrictModel):
    """The network: its class and its own constructor arguments (the task supplies
    in_channels, num_classes and input_size to a constructor that takes them)."""

    class_name: Annotated[str, Field(alias="class", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    args: dict[str, Any]

    def to_ref(self) -> ModelRef:
        return ModelRef(self.class_name, module=getattr(self, "module", None), file=getattr(self, "file", None),
                        args=dict(self.args))


class ModuleModel(_ModelSource):
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]


class FileModel(_ModelSource):
    file: str

    @model_validator(mode="after")
    def _file_exists(self) -> FileModel:
        if not self.file.endswith(".py") or not Path(self.file).is_file():
            raise ValueError(f"model file {self.file!r} is not a .py file (relative to the project root)")
        return self


ModelParams = Annotated[
    Annotated[ModuleModel, Tag("module-ref")] | Annotated[FileModel, Tag("file-ref")],
    Discriminator(lambda raw: "file-ref" if (raw.get("file") if isinstance(raw, dict) else hasattr(raw, "file"))
                  else "module-ref"),
]


class TrainParams(StrictModel):
    model: ModelParams
    input_size: Annotated[int, Field(ge=8, le=512)]
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: Annotated[float, Field(gt=0.0, le=10.0)]
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)]
    weight_decay: Annotated[float, Field(ge=0.0, lt=1.0)]
    schedule: Literal["cosine", "step", "onecycle"]
    warmup_epochs: Annotated[int, Field(ge=0)]
    crop_padding: Annotated[int, Field(ge=0, le=16)]
    hflip: bool

    @model_validator(mode="after")
    def _warmup_shorter_than_training(self) -> TrainParams:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs})"
            )
        return self


class ExportParams(StrictModel):
    weight_bits: Annotated[int, Field(ge=2, le=8)]
    activation_bits: Annotated[int, Field(ge=2, le=8)]
    calibration_samples: PositiveInt
    activation_percentile: Annotated[float, Field(gt=50.0, le=100.0)]


class CimCalibrationParams(StrictModel):
    samples_per_code: PositiveInt
    trim_repeats: PositiveInt


class CimSweepParams(StrictModel):
    methods: Annotated[list[Literal[METHODS]], Field(min_length=1)]
    adc_bits: Annotated[list[Annotated[int, Field(ge=1, le=16)]], Field(min_length=1)]
    cap_mismatch_sigma: Annotated[list[Annotated[float, Field(ge=0.0)]], Field(min_length=1)]
    test_images: PositiveInt


class CimParams(StrictModel):
    macro: MacroConfig
    chip_seed: Annotated[int, Field(ge=0, lt=2**31)]
    calibration: CimCalibrationParams
    full_scale_percentile: Annotated[float, Field(gt=50.0, le=100.0)]
    calibration_images: PositiveInt
    noise: bool
    noise_seed: Annotated[int, Field(ge=0, lt=2**31)]
    batch_size: PositiveInt
    sweep: CimSweepParams


class AdmmTaskParams(StrictModel):
    prune: AdmmPruneParams
    quantize: AdmmQuantizeParams
    binarize: AdmmQuantizeParams


class EvaluateParams(StrictModel):
    batch_size: PositiveInt
    confidence_level: Annotated[float, Field(gt=0.0, lt=1.0)]


class ReportParams(StrictModel):
    title: Annotated[str, Field(min_length=1)]
    plot_dpi: Annotated[int, Field(ge=50, le=600)]


class Params(StrictModel):
    seeds: Annotated[list[Seed], Field(min_length=1)]
    threads: Annotated[int, Field(ge=1, le=256)]
    tasks: Annotated[list[str], Field(min_length=1)]
    methods: Annotated[list[Literal[METHODS]], Field(min_length=1)]
    data: dict[str, DataSource]
    train: dict[str, TrainParams]
    admm: dict[str, AdmmTaskParams]
    dynasty: DynastyParams
    export: ExportParams
    cim: CimParams
    evaluate: EvaluateParams
    report: ReportParams

    @property
    def swept_methods(self) -> list[str]:
        """The cim.sweep models this run builds (a run of other methods sweeps none)."""
        return [m for m in self.cim.sweep.methods if m in self.methods]

    @model_validator(mode="after")
    def _tasks_are_defined(self) -> Params:
        for i, task in enumerate(self.tasks):
            for section in ("data", "train"):
                if task not in getattr(self, section):
                    defined = ", ".join(sorted(getattr(self, section))) or "none"
                    raise ValueError(
                        f"tasks[{i}] = {task!r} has no '{section}.{task}' entry "
                        f"(defined: {defined})"
                    )
        if ADMM_METHODS & set(self.methods):
            for i, task in enumerate(self.tasks):
                if task not in self.admm:
                    raise ValueError(f"tasks[{i}] = {task!r} has no 'admm.{task}' entry, needed by the ADMM methods")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks lists a task twice: {self.tasks}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds lists a seed twice: {self.seeds}")
        return self


_SOURCE_TAGS = {
    m.model_fields["source"].annotation.__args__[0]
    for m in (SklearnDigits, MnistIdx, UspsH5, Cifar10Folder, Cifar10Binary)
} | {"module-ref", "file-ref"}  # the model reference's union tags


def _format_errors(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} invalid value(s)"]
    for err in exc.errors(include_url=False):
        # Drop the union tag pydantic inserts for discriminated unions (e.g. 'mnist_idx').
        loc = [str(p) for p in err["loc"] if p not in _SOURCE_TAGS]
        key = ".".join(loc) or "<top level>"
        if err["type"] == "value_error":
            lines.append(f"  {key}: {err['msg'].removeprefix('Value error, ')}")
        elif err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif err["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        else:
            lines.append(f"  {key}: {err['msg']} (got {err['input']!r})")
    return "\n".join(lines)


def parse_params(raw: Any, path: Path = PARAMS_FILE) -> Params:
    """Validate an already-loaded mapping (Snakemake's config) or raise ParamsError."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(_format_errors(path, exc)) from None


def load_params(path: str | os.PathLike = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: parameter file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    return parse_params(raw, path)


def lookup(raw: dict[str, Any], dotted: str) -> Any:
    """Value at a dotted key path ('train.digits'), as DVC addresses params."""
    node: Any = raw
    for part in dotted.split("."):
        node = node[part]
    return node
