"""Networks by reference: a module path or a file of the user's, a class, its arguments.

Kept free of torch at import time: params validation (and so every Snakemake parse)
reads these references without loading a network.

Built-in models (LeNet-5, ResNet-20) are named the same way as a user's own
(``{module: cimflow.models.lenet5, class: LeNet5, args: {}}``), so nothing in the
pipeline knows a model by name. The class is called with the task-derived keywords it
accepts (``in_channels``, ``num_classes``, ``input_size``; ``scale`` on super-resolution
tasks) plus ``args``. A file is
imported as code, like any model definition: only point params.yaml at files you trust.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cimflow.errors import CimflowError

if TYPE_CHECKING:
    from torch import nn

TASK_ARGUMENTS = ("in_channels", "num_classes", "input_size", "scale")


class ModelError(CimflowError):
    """A model reference that cannot be loaded or built; the message names it."""


@dataclass(frozen=True)
class ModelRef:
    """Where a network's class lives (``module`` dotted path or ``file`` .py) and its own arguments."""

    class_name: str
    module: str | None = None
    file: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.module is None) == (self.file is None):
            raise ModelError(f"model {self.class_name}: give exactly one of module or file")

    @property
    def where(self) -> str:
        return self.module if self.module is not None else str(self.file)

    def to_json(self) -> str:
        return json.dumps({"module": self.module, "file": self.file, "class": self.class_name, "args": self.args},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelRef:
        raw = json.loads(text)
        return cls(raw["class"], raw["module"], raw["file"], raw["args"])

    def load_class(self) -> type[nn.Module]:
        from torch import nn

        namespace = _import_file(Path(self.file)) if self.file is not None else _import_module(self.module)
        found = getattr(namespace, self.class_name, None)
        if not (inspect.isclass(found) and issubclass(found, nn.Module)):
            raise ModelError(f"{self.where} has no torch.nn.Module class {self.class_name!r}")
        return found

    def build(self, in_channels: int, num_classes: int, input_size: int, scale: int | None = None) -> nn.Module:
        """An instance, given the task-derived keywords its constructor declares plus ``args``."""
        cls = self.load_class()
        task = {"in_channels": in_channels, "num_classes": num_classes, "input_size": input_size}
        if scale is not None:
            task["scale"] = scale
        accepted = inspect.signature(cls).parameters
        clash = sorted(set(self.args) & set(TASK_ARGUMENTS))
        if clash:
            raise ModelError(f"{self.where}:{self.class_name} args {clash} are set from the task's data, not params")
        kwargs = {k: v for k, v in task.items() if k in accepted} | self.args
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"cannot build {self.where}:{self.class_name}({kwargs}): {exc}") from exc


def _import_module(name: str) -> object:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ModelError(f"cannot import model module {name!r} ({exc})") from exc


def _import_file(path: Path) -> object:
    """Import a model file once per content (a unique module name keeps two files apart)."""
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    source = path.read_bytes()
    name = f"cimflow_user_model_{hashlib.sha256(source).hexdigest()[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ModelError(f"model file {path} failed to import ({type(exc).__name__}: {exc})") from exc
    return module
