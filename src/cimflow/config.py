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
from pydantic import Field, ValidationError, model_validator

from cimflow.compress.admm.params import AdmmTaskParams
from cimflow.compress.admp.params import AdmpTaskParams
from cimflow.compress.dynasty.params import DynastyParams
from cimflow.compress.featreg.params import FeatRegParams
from cimflow.errors import ParamsError
from cimflow.methods import METHODS as METHOD_TABLE
from cimflow.methods import CLASSIFICATION, SUPER_RESOLUTION, for_kind
from cimflow.params.cim import METHODS, CimParams
from cimflow.params.data import DataSource
from cimflow.params.evaluate import EvaluateParams
from cimflow.params.export import ExportParams
from cimflow.params.report import ReportParams
from cimflow.params.train import AnyTrainParams, SrTrainParams
from cimflow.schema import Seed, StrictModel

PARAMS_FILE = Path("params.yaml")
ADMM_METHODS = {"admm_prune", "admm_quant", "admm_binary", "magnitude_one_shot", "magnitude_iterative"}
ADMP_METHODS = {"dann", "admp", "adapt_then_prune", "prune_then_adapt"}
FEATREG_METHODS = {"featreg", "sr_channel"}


class Params(StrictModel):
    seeds: Annotated[list[Seed], Field(min_length=1)]
    threads: Annotated[int, Field(ge=1, le=256)]
    tasks: Annotated[list[str], Field(min_length=1)]
    methods: Annotated[list[Literal[METHODS]], Field(min_length=1)]
    data: dict[str, DataSource]
    train: dict[str, AnyTrainParams]
    admm: dict[str, AdmmTaskParams]
    admp: dict[str, AdmpTaskParams]
    featreg: dict[str, FeatRegParams]
    dynasty: DynastyParams
    export: ExportParams
    cim: CimParams
    evaluate: EvaluateParams
    report: ReportParams

    @property
    def swept_methods(self) -> list[str]:
        """The cim.sweep models this run builds (a run of other methods sweeps none)."""
        return [m for m in self.cim.sweep.methods if m in self.methods]

    def sweep_points(self, task: str) -> list[tuple[str, int]]:
        """(pruner, target) of the ratio sweep this run builds on ``task``: the pruners of
        ``admm.<task>.sweep`` that are among the run's methods, at every target."""
        if self.kind(task) != CLASSIFICATION or task not in self.admm:
            return []
        sweep = self.admm[task].sweep
        return [(m, t) for m in sweep.methods if m in self.methods for t in sweep.targets]

    def kind(self, task: str) -> str:
        """The task's kind (classification, domain_adaptation, super_resolution), from its data source."""
        return self.data[task].kind

    def task_methods(self, task: str) -> list[str]:
        """The listed methods that run on ``task`` (those made for its kind), in list order."""
        return for_kind(self.methods, self.kind(task))

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
        for i, task in enumerate(self.tasks):
            runs = self.task_methods(task)
            if not runs:
                raise ValueError(f"tasks[{i}] = {task!r} is a {self.kind(task)} task and none of methods "
                                 f"{self.methods} runs on it (those that do: "
                                 f"{for_kind(list(METHOD_TABLE), self.kind(task))})")
            super_resolution = self.kind(task) == SUPER_RESOLUTION
            if super_resolution != isinstance(self.train[task], SrTrainParams):
                recipe = "super-resolution recipe (with patch_size)" if super_resolution else "classifier recipe"
                raise ValueError(f"train.{task}: a {self.kind(task)} task needs a {recipe}")
            if super_resolution and self.train[task].patch_size % self.data[task].scale:
                raise ValueError(f"train.{task}.patch_size ({self.train[task].patch_size}) is not a multiple of "
                                 f"data.{task}.scale ({self.data[task].scale})")
            for section, needs in (("admm", ADMM_METHODS), ("admp", ADMP_METHODS), ("featreg", FEATREG_METHODS)):
                if needs & set(runs) and task not in getattr(self, section):
                    raise ValueError(f"tasks[{i}] = {task!r} has no '{section}.{task}' entry, needed by "
                                     f"{sorted(needs & set(runs))}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks lists a task twice: {self.tasks}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds lists a seed twice: {self.seeds}")
        return self


def _key_path(raw: Any, loc: tuple) -> str:
    """An error location as the user's key path: walking the input, a step before the last
    that names no key of it was inserted by pydantic (a union tag such as 'mnist_idx' or
    'budget') and is dropped, even where a task shares its source's name."""
    parts, node = [], raw
    for i, step in enumerate(loc):
        if isinstance(node, dict) and step in node or isinstance(node, list) and isinstance(step, int) \
                and 0 <= step < len(node):
            node = node[step]
        elif i < len(loc) - 1:
            continue
        else:
            node = None
        parts.append(str(step))
    return ".".join(parts) or "<top level>"


def _format_errors(path: Path, exc: ValidationError, raw: Any) -> str:
    lines = [f"{path}: {exc.error_count()} invalid value(s)"]
    for err in exc.errors(include_url=False):
        key = _key_path(raw, err["loc"])
        if err["type"] == "value_error":
            lines.append(f"  {key}: {err['msg'].removeprefix('Value error, ')}")
        elif err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif err["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif err["type"] in ("union_tag_not_found", "union_tag_invalid"):  # the tag picks the section's kind
            tag = f"{key}.{err['ctx']['discriminator'].strip(chr(39))}"
            if err["type"] == "union_tag_not_found":
                lines.append(f"  {tag}: required key is missing")
            else:
                lines.append(f"  {tag}: {err['ctx']['tag']!r} is not one of {err['ctx']['expected_tags']}")
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
        raise ParamsError(_format_errors(path, exc, raw)) from None


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
