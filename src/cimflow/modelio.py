"""Float model artifacts: a state_dict in safetensors plus what is needed to rebuild it.

The metadata carries the model reference (module or file, class and arguments; see
cimflow.modelref), the task-derived constructor arguments and the input preprocessing, so later stages rebuild the exact network without reading params.yaml
sections that belong to training (keeping DVC's dependency lists honest). A model whose
channels were removed (structured pruning, cimflow.shrink) also records each shrunk
layer's width: the network is rebuilt at full size, cut to those widths, then loaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import torch
from torch import nn

from cimflow.artifacts import ArtifactError, load_tensors, save_tensors
from cimflow.modelref import ModelRef
from cimflow.preprocess import Preprocessor
from cimflow.shrink import ShrinkError, shrink

MODEL_FORMAT = "cimflow-model-v2"


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and input contract of a trained network."""

    model: ModelRef
    in_channels: int
    num_classes: int
    prep: Preprocessor
    class_names: tuple[str, ...]
    widths: tuple[tuple[str, int], ...] = ()
    """(layer, output channels) of every layer narrower than the reference builds it."""
    scale: int | None = None
    """Super-resolution models: the upscaling factor. They take Y / 255 at native size, so
    ``prep`` (a classifier's resize and normalisation) is the identity and unused."""

    def build(self) -> nn.Module:
        model = self._full()
        if not self.widths:
            return model
        return shrink(model, {layer: torch.arange(_width(model, layer)) < kept for layer, kept in self.widths})

    def shrunk(self, model: nn.Module) -> ModelSpec:
        """This spec for ``model``, a shrunk copy of the network it describes."""
        full = self._full()
        widths = tuple((name, _width(model, name)) for name, module in full.named_modules()
                       if isinstance(module, (nn.Conv2d, nn.Linear)) and _width(model, name) != _width(full, name))
        return dataclasses.replace(self, widths=widths)

    def _full(self) -> nn.Module:
        return self.model.build(self.in_channels, self.num_classes, self.prep.input_size, self.scale)

    def to_metadata(self) -> dict[str, str]:
        return {
            "model": self.model.to_json(),
            "in_channels": str(self.in_channels),
            "num_classes": str(self.num_classes),
            "input_size": str(self.prep.input_size),
            "mean": json.dumps(list(self.prep.mean)),
            "std": json.dumps(list(self.prep.std)),
            "class_names": json.dumps(list(self.class_names)),
            **({"widths": json.dumps(dict(self.widths))} if self.widths else {}),
            **({"scale": str(self.scale)} if self.scale is not None else {}),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: str | os.PathLike) -> ModelSpec:
        try:
            prep = Preprocessor(int(meta["input_size"]), tuple(json.loads(meta["mean"])), tuple(json.loads(meta["std"])))
            return cls(
                ModelRef.from_json(meta["model"]),
                int(meta["in_channels"]),
                int(meta["num_classes"]),
                prep,
                tuple(json.loads(meta["class_names"])),
                tuple((str(k), int(v)) for k, v in json.loads(meta.get("widths", "{}")).items()),
                int(meta["scale"]) if "scale" in meta else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{path}: model metadata incomplete or malformed ({exc!r})") from exc


def _width(model: nn.Module, layer: str) -> int:
    module = model.get_submodule(layer)
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def save_model(path: str | os.PathLike, model: nn.Module, spec: ModelSpec) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_tensors(path, state, {"format": MODEL_FORMAT, **spec.to_metadata()})


def load_model(path: str | os.PathLike) -> tuple[nn.Module, ModelSpec]:
    tensors, meta = load_tensors(path)
    if meta.get("format") != MODEL_FORMAT:
        raise ArtifactError(f"{path}: not a cimflow float model (format={meta.get('format')!r})")
    spec = ModelSpec.from_metadata(meta, path)
    try:
        model = spec.build()
    except (ShrinkError, AttributeError) as exc:
        raise ArtifactError(f"{path}: its layer widths {dict(spec.widths)} do not fit a {spec.model.class_name} "
                            f"({exc})") from exc
    try:
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not fit a {spec.model.class_name} ({exc})") from exc
    model.eval()
    return model, spec
