"""Schema of params.yaml ``train.<task>``: the network (by reference) and its training recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from cimflow.modelref import ModelRef
from cimflow.schema import PositiveInt, StrictModel

MODULE_REF, FILE_REF = "module-ref", "file-ref"  # the model reference's union tags (error messages drop them)


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
    Annotated[ModuleModel, Tag(MODULE_REF)] | Annotated[FileModel, Tag(FILE_REF)],
    Discriminator(lambda raw: FILE_REF if (raw.get("file") if isinstance(raw, dict) else hasattr(raw, "file"))
                  else MODULE_REF),
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


class SrTrainParams(StrictModel):
    """A super-resolution network's recipe: Adam on random aligned LR/HR patches (EDSR-style),
    ``patches_per_epoch`` drawn afresh each epoch with random flips and 90-degree rotations."""

    model: ModelParams
    epochs: PositiveInt
    batch_size: PositiveInt
    patch_size: Annotated[int, Field(ge=8, le=512)]  # HR pixels; a multiple of the task's scale
    patches_per_epoch: PositiveInt
    lr: Annotated[float, Field(gt=0.0, le=1.0)]
    schedule: Literal["cosine", "step"]
    warmup_epochs: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _warmup_shorter_than_training(self) -> SrTrainParams:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be smaller than epochs ({self.epochs})")
        return self


CLASSIFIER, SUPER_RESOLVER = "classifier", "super-resolver"  # union tags of a train entry (dropped in errors)

AnyTrainParams = Annotated[
    Annotated[TrainParams, Tag(CLASSIFIER)] | Annotated[SrTrainParams, Tag(SUPER_RESOLVER)],
    Discriminator(lambda raw: SUPER_RESOLVER if (("patch_size" in raw) if isinstance(raw, dict)
                                                 else isinstance(raw, SrTrainParams)) else CLASSIFIER),
]
"""A task's ``train`` entry: a super-resolution recipe has ``patch_size``; the task's kind must match."""
