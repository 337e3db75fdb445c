"""The DAG's stages: what each reads from params.yaml and which code it runs.

This registry is the single description both front ends are generated from: the
Snakemake rules pass exactly these params keys through ``params:`` (so an edit reruns
exactly the dependent jobs) and the DVC generator writes them as ``params:``; the code
dependencies are the stage module's transitive imports inside cimflow.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from cimflow.modelref import ModelRef


@dataclass(frozen=True)
class Stage:
    name: str
    params: tuple[str, ...]  # dotted params.yaml keys; may contain {task}
    module_name: str = ""  # stage module when several stages share one
    runs_model: bool = True  # builds the task's network, so the model's code is an input

    @property
    def module(self) -> str:
        return f"cimflow.stages.{self.module_name or self.name}"

    def param_keys(self, **wildcards: str) -> list[str]:
        return [key.format(**wildcards) for key in self.params]


STAGES = {
    s.name: s
    for s in (
        Stage("prepare", ("threads", "data.{task}"), runs_model=False),
        Stage("train", ("threads", "train.{task}")),
        Stage("admm_prune", ("threads", "train.{task}", "admm.{task}.prune"), "compress"),
        Stage("admm_quantize", ("threads", "train.{task}", "admm.{task}.quantize"), "compress"),
        Stage("admm_binarize", ("threads", "train.{task}", "admm.{task}.binarize"), "compress"),
        Stage("magnitude_prune", ("threads", "train.{task}", "admm.{task}.prune"), "compress"),
        Stage("dynasty_train", ("threads", "train.{task}", "dynasty")),
        Stage("export", ("threads", "export")),
        Stage("evaluate", ("threads", "evaluate")),
        Stage("calibrate", ("cim.macro", "cim.chip_seed", "cim.calibration"), runs_model=False),
        Stage("map", ("threads", "cim.macro", "cim.chip_seed", "cim.full_scale_percentile",
                      "cim.calibration_images", "cim.noise", "cim.noise_seed", "cim.batch_size")),
        Stage("evaluate_cim", ("threads", "cim.macro", "cim.chip_seed", "cim.noise", "cim.noise_seed",
                               "cim.batch_size", "evaluate.confidence_level")),
        Stage("cim_sweep", ("threads", "cim.macro", "cim.chip_seed", "cim.calibration", "cim.noise",
                            "cim.noise_seed", "cim.batch_size", "cim.sweep")),
        Stage("report", ("report", "evaluate.confidence_level"), runs_model=False),
    )
}
"""No stage reads ``seeds``: a seed reaches a job as its ``{seed}`` wildcard (``--seed``),
so adding a seed adds jobs and reruns none."""

EVALUATION_STAGES = frozenset({"evaluate", "evaluate_cim", "cim_sweep"})
"""The only stages that may read a task's test split."""


def _module_file(module: str) -> Path:
    spec = find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot locate module {module}")
    return Path(spec.origin)


def _imports(module: str) -> set[str]:
    """cimflow modules imported by ``module`` (static: no code is executed)."""
    file = _module_file(module)
    if file.suffix != ".py":
        return set()  # compiled extension: its sources are added by code_files
    tree = ast.parse(file.read_text())
    found = set()
    for node in tree.body:  # module level only: lazy imports inside functions are not followed
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "cimflow" and find_spec(name.rpartition(".")[0] or name) is not None:
                try:
                    if find_spec(name) is not None:
                        found.add(name)
                except ModuleNotFoundError:
                    pass
    return found


def _closure_files(roots: list[str]) -> set[str]:
    """Source files (relative to the project) of the cimflow modules ``roots`` import, transitively."""
    todo, seen = list(roots), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(_imports(mod))
        parent = mod.rpartition(".")[0]
        if parent:
            todo.append(parent)  # importing a.b runs a/__init__.py
    files = set()
    src = _module_file("cimflow").parent.parent
    for mod in seen:
        file = _module_file(mod)
        if file.suffix == ".py":
            sources = [file]
        else:  # a Cython extension: its .pyx and the .pxi files it includes
            stem = mod.rpartition(".")[2]
            sources = [file.with_name(f"{stem}.pyx"), *sorted(file.parent.glob("*.pxi"))]
        files.update(str((Path("src") / f.relative_to(src)).as_posix()) for f in sources if f.is_file())
    return files


@cache
def code_files(stage: str) -> tuple[str, ...]:
    """Source files a stage runs: its module's import closure (the model's code aside)."""
    return tuple(sorted(_closure_files([STAGES[stage].module, "cimflow.cli"])))


def model_code_files(model: ModelRef) -> tuple[str, ...]:
    """The files a model reference runs: the user's file, or the import closure of a
    cimflow model module. A module outside cimflow is not followed (name a file to track it)."""
    return _model_files(model.module, model.file)


@cache
def _model_files(module: str | None, file: str | None) -> tuple[str, ...]:
    if file is not None:
        return (file,)
    if module.split(".")[0] != "cimflow":
        return ()
    return tuple(sorted(_closure_files([module])))
