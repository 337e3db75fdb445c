"""Code fingerprints: what a stage runs, hashed so that only behaviour counts.

A stage's jobs depend on one small file, ``results/code/<stage>.json``, instead of the
source files themselves. It holds a hash of each module the stage runs, taken over the
module's syntax tree with docstrings (and other bare strings) dropped; comments and
layout never reach the tree. The file is rewritten only when a hash changes. So a docstring, a comment or a reformat
reruns nothing, while any change to code the stage runs reruns it, in both front ends:
Snakemake refreshes the files when it parses the workflow, DVC in its first stage
(``cimflow fingerprint``), with the same function.

Which modules a stage runs: the import closure (static, every ``import`` in the file,
function-level ones included) of its stage module and of the params schemas of the
sections it reads. Modules in :data:`NOT_BEHAVIOUR` are neither hashed nor followed:
they decide whether and which jobs run (validation of the whole params.yaml, the CLI's
dispatch, the stage and method tables), and what they contribute to a job reaches it
as the rule's own params, inputs and outputs. That is what lets a new method (its
subpackage, table entries and params section) rerun nothing else.

Modules are located by path, never imported, and each file's hash and imports are cached
by (mtime, size) in ``results/code/.summaries.json``, so a no-op refresh parses nothing.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cimflow.atomic import write_text
from cimflow.errors import ParamsError
from cimflow.modelref import ModelRef

if typing.TYPE_CHECKING:
    from cimflow.config import Params

CODE_DIR = "results/code"
FORMAT = "cimflow-code-v1"
SUMMARY_VERSION = 1  # bump when _summarise changes: cached summaries of another version are dropped

NOT_BEHAVIOUR: dict[str, str] = {
    "cimflow.config": "validates the whole params.yaml before a stage runs; a stage's values are its params",
    "cimflow.cli": "parses arguments and dispatches to the stage module",
    "cimflow.stages": "the stage table: its params keys become each rule's params",
    "cimflow.methods": "the method table: what each rule reads and writes",
    "cimflow.fingerprint": "this module",
}


@dataclass(frozen=True)
class Fingerprint:
    """One stage's (or one model's) code: a hash per source file and one over them all."""

    name: str
    files: dict[str, str]  # project-relative path -> sha256 of its normalised source

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.files, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> str:
        body = {"format": FORMAT, "name": self.name, "fingerprint": self.digest, "files": self.files}
        return json.dumps(body, indent=1, sort_keys=True) + "\n"


def stage_path(stage: str) -> str:
    return f"{CODE_DIR}/{stage}.json"


def model_path(task: str) -> str:
    return f"{CODE_DIR}/model-{task}.json"


class Sources:
    """Locates and hashes cimflow modules under ``root/src`` (the project's checkout), or
    those of the installed cimflow when the project holds no sources."""

    def __init__(self, root: Path = Path(".")) -> None:
        self.root = root
        self.src = root / "src"
        if not (self.src / "cimflow" / "__init__.py").is_file():  # a project using an installed cimflow
            self.src = Path(__file__).resolve().parent.parent
        self._files: dict[str, Path | None] = {}
        self._imports: dict[str, set[str]] = {}
        self._cache_file = root / CODE_DIR / ".summaries.json"
        self._cache = _load_cache(self._cache_file)
        self._dirty = False

    def file(self, module: str) -> Path | None:
        """The source of a cimflow module (a .py, a package's __init__.py, or a Cython .pyx)."""
        if module not in self._files:
            self._files[module] = None
            if module.split(".")[0] == "cimflow":
                base = self.src.joinpath(*module.split("."))
                for candidate in (base.with_suffix(".py"), base / "__init__.py", base.with_suffix(".pyx")):
                    if candidate.is_file():
                        self._files[module] = candidate
                        break
        return self._files[module]

    def imports(self, module: str) -> set[str]:
        """cimflow modules ``module`` imports anywhere in its body (parents included)."""
        if module not in self._imports:
            path = self.file(module)
            found: set[str] = set()
            if path.suffix == ".py":  # a Cython module's cimports are C-level
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for name in self.summary(path).imports(package):
                    while name:
                        if self.file(name) is not None:
                            found.add(name)
                        name = name.rpartition(".")[0]
            self._imports[module] = found
        return self._imports[module]

    def closure(self, roots: Iterable[str]) -> list[str]:
        """Modules ``roots`` run, transitively, skipping :data:`NOT_BEHAVIOUR`."""
        todo, seen = [r for r in roots if r not in NOT_BEHAVIOUR], set()
        while todo:
            module = todo.pop()
            if module in seen:
                continue
            if self.file(module) is None:
                raise ModuleNotFoundError(f"{module}: no source under {self.src}")
            seen.add(module)
            todo.extend(m for m in self.imports(module) | set(_parents(module)) if m not in NOT_BEHAVIOUR)
        return sorted(seen)

    def fingerprint(self, name: str, modules: Iterable[str], extra_files: Iterable[Path] = ()) -> Fingerprint:
        files = [self.file(m) for m in modules]
        for path in list(files):
            if path.suffix == ".pyx":  # a Cython module: the .pxi files it includes
                files.extend(path.parent / inc for inc in _pyx_includes(path.read_text()))
        files.extend(extra_files)
        return Fingerprint(name, {self._relative(p): self.summary(p).digest for p in sorted(set(files))})

    def summary(self, path: Path) -> _Summary:
        """The file's summary, from the on-disk cache while its mtime and size are unchanged
        (so a no-op dry run parses nothing)."""
        stat = path.stat()
        key, stamp = str(path.resolve()), [stat.st_mtime_ns, stat.st_size]
        entry = self._cache.get(key)
        if entry is None or entry["stamp"] != stamp:
            summary = _summarise(path)
            entry = {"stamp": stamp, "digest": summary.digest, "statements": summary.statements}
            self._cache[key], self._dirty = entry, True
        return _Summary(entry["digest"], tuple((b, tuple(m), lvl) for b, m, lvl in entry["statements"]))

    def save_cache(self) -> None:
        if self._dirty:
            write_text(self._cache_file, json.dumps({"version": SUMMARY_VERSION, "files": self._cache}, sort_keys=True))
            self._dirty = False

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@dataclass(frozen=True)
class _Summary:
    """What one source file contributes: its normalised hash and its import statements
    (module, names, relative level)."""

    digest: str
    statements: tuple[tuple[str, tuple[str, ...], int], ...]

    def imports(self, package: str) -> set[str]:
        """Dotted names imported, relative ones resolved against ``package``."""
        names: set[str] = set()
        for base, members, level in self.statements:
            if level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - level + 1])
                base = f"{anchor}.{base}" if base else anchor
            if members:  # from base import a, b
                names.add(base)
                names.update(f"{base}.{m}" for m in members)
            else:  # import base
                names.add(base)
        return names


def _load_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(cache, dict) or cache.get("version") != SUMMARY_VERSION:
        return {}
    return cache.get("files", {})


def _summarise(path: Path) -> _Summary:
    text = path.read_text()
    if path.suffix != ".py":  # Cython: drop comment-only lines, blank lines and trailing spaces
        lines = (line.rstrip() for line in text.splitlines())
        normal = "\n".join(line for line in lines if line and not line.lstrip().startswith("#"))
        return _Summary(hashlib.sha256(normal.encode()).hexdigest(), ())
    try:
        tree = ast.parse(text)
    except SyntaxError:  # not Python we can parse: any byte change counts, no imports followed
        return _Summary(hashlib.sha256(text.encode()).hexdigest(), ())
    statements = tuple(_import_statements(tree.body))
    normal = ast.dump(_without_docstrings(tree), include_attributes=False)
    return _Summary(hashlib.sha256(normal.encode()).hexdigest(), statements)


_PYX_INCLUDE = re.compile(r'^\s*include\s+["\']([^"\']+)["\']', re.M)


def _pyx_includes(source: str) -> list[str]:
    return _PYX_INCLUDE.findall(source)


_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def _import_statements(body: list[ast.stmt]) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """Every import statement, nested ones (in functions, ifs, trys) included; expressions
    are not entered (an import is always a statement)."""
    for node in body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), 0
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", tuple(a.name for a in node.names), node.level
        else:
            for field in _BLOCKS:
                yield from _import_statements(getattr(node, field, None) or [])


def _is_string(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _without_docstrings(tree: ast.Module) -> ast.Module:
    """Drop every statement that is a bare string: docstrings of modules, classes and
    functions, and the attribute docstrings written under fields (none of them runs)."""

    def strip(node: ast.AST) -> None:
        for field in _BLOCKS:
            body = getattr(node, field, None)
            if not body or not isinstance(body, list):
                continue
            kept = [child for child in body if not _is_string(child)]
            if field == "body" and not kept:
                kept = [ast.Pass()]
            setattr(node, field, kept)
            for child in kept:
                if isinstance(child, ast.AST):
                    strip(child)

    strip(tree)
    return tree


def schema_modules(sections: Iterable[str]) -> set[str]:
    """The modules defining the params schemas of top-level ``sections`` of params.yaml."""
    return set().union(*(_section_schemas(section) for section in sections))


@cache
def _section_schemas(section: str) -> frozenset[str]:
    from pydantic import BaseModel

    from cimflow.config import Params

    found: set[str] = set()
    seen: set[int] = set()

    def visit(annotation: object) -> None:
        if id(annotation) in seen:
            return
        seen.add(id(annotation))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.update(c.__module__ for c in annotation.__mro__
                         if issubclass(c, BaseModel) and c.__module__.startswith("cimflow."))
            for field in annotation.model_fields.values():
                visit(field.annotation)
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(Params.model_fields[section].annotation)
    return frozenset(found)


def stage_fingerprint(stage: str, sources: Sources) -> Fingerprint:
    from cimflow.stages import STAGES

    spec = STAGES[stage]
    sections = {key.split(".")[0] for key in spec.params}
    return sources.fingerprint(stage, sources.closure([spec.module, *sorted(schema_modules(sections))]))


def model_fingerprint(task: str, model: ModelRef, sources: Sources) -> Fingerprint:
    """A task's network: the user's file, or a cimflow model module's closure. A module
    outside cimflow is not followed (name a file to track it)."""
    if model.file is not None:
        return sources.fingerprint(f"model-{task}", [], [sources.root / model.file])
    if model.module.split(".")[0] != "cimflow":
        return Fingerprint(f"model-{task}", {})
    return sources.fingerprint(f"model-{task}", sources.closure([model.module]))


def task_models(params: Params, tasks: Iterable[str], where: object = "params.yaml") -> dict[str, ModelRef]:
    """Each task's model reference, as the model fingerprints need them."""
    unknown = sorted(set(tasks) - set(params.train))
    if unknown:
        raise ParamsError(f"{where}: no train.<task> entry for {', '.join(unknown)}")
    return {task: params.train[task].model.to_ref() for task in tasks}


def refresh(path: Path, fingerprint: Fingerprint) -> bool:
    """Write ``fingerprint`` to ``path`` unless the file already says the same; True if written.

    An unchanged file keeps its mtime, which is what keeps Snakemake from rerunning."""
    text = fingerprint.to_json()
    if path.is_file() and path.read_text() == text:
        return False
    write_text(path, text)
    return True


def _all(models: Mapping[str, ModelRef], sources: Sources) -> dict[str, Fingerprint]:
    from cimflow.stages import STAGES

    prints = {stage_path(s): stage_fingerprint(s, sources) for s in STAGES}
    prints |= {model_path(t): model_fingerprint(t, m, sources) for t, m in sorted(models.items())}
    return prints


def outputs(tasks: Iterable[str]) -> list[str]:
    """The fingerprint files of every stage and of each task's model."""
    from cimflow.stages import STAGES

    return [stage_path(s) for s in STAGES] + [model_path(t) for t in tasks]


def refresh_all(models: Mapping[str, ModelRef], root: Path = Path(".")) -> list[str]:
    """Refresh every stage's fingerprint and each task's model fingerprint; return the
    paths rewritten."""
    sources = Sources(root)
    written = [rel for rel, fp in _all(models, sources).items() if refresh(root / rel, fp)]
    sources.save_cache()
    return written


def source_files(models: Mapping[str, ModelRef], root: Path = Path(".")) -> list[str]:
    """Every file some fingerprint hashes (DVC's fingerprint stage depends on them)."""
    sources = Sources(root)
    files = sorted({path for fp in _all(models, sources).values() for path in fp.files})
    sources.save_cache()
    return files
