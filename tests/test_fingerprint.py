"""Code fingerprints: docstrings, comments and layout never count; code does; each stage
holds exactly the modules it runs; a new method's modules reach no existing stage."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cimflow import fingerprint
from cimflow.modelref import ModelRef
from cimflow.stages import STAGES
from conftest import ROOT

CIM_STAGES = {"map", "evaluate_cim", "cim_sweep", "map_sr", "evaluate_sr_cim"}


def _tree(tmp_path: Path, files: dict[str, str]) -> fingerprint.Sources:
    for rel, text in {"cimflow/__init__.py": "", **files}.items():
        path = tmp_path / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return fingerprint.Sources(tmp_path)


def _digest(tmp_path: Path, text: str) -> str:
    sources = _tree(tmp_path, {"cimflow/a.py": text})
    return sources.fingerprint("a", ["cimflow.a"]).digest


BASE = '''"""Module doc."""
SCALE = 2.0


def f(x):
    """Function doc."""
    return SCALE * x  # a comment


class C:
    size: int
    """Attribute doc."""
'''


@pytest.mark.parametrize("edited", [
    BASE.replace("Module doc.", "Another module doc."),
    BASE.replace("Function doc.", "Reworded."),
    BASE.replace("Attribute doc.", "Reworded."),
    BASE.replace("# a comment", "# another comment"),
    BASE.replace("return SCALE * x", "return (SCALE\n            * x)"),
    BASE.replace('    """Function doc."""\n', ""),
])
def test_docstrings_comments_and_layout_do_not_count(tmp_path, edited):
    assert _digest(tmp_path / "a", BASE) == _digest(tmp_path / "b", edited)


@pytest.mark.parametrize("edited", [
    BASE.replace("SCALE = 2.0", "SCALE = 2.5"),
    BASE.replace("return SCALE * x", "return SCALE * x + 0"),
    BASE.replace("size: int", "size: float"),
])
def test_code_changes_count(tmp_path, edited):
    assert _digest(tmp_path / "a", BASE) != _digest(tmp_path / "b", edited)


def test_function_level_and_relative_imports_are_followed(tmp_path):
    sources = _tree(tmp_path, {
        "cimflow/pkg/__init__.py": "",
        "cimflow/pkg/main.py": "from . import helper\n\ndef run():\n    from cimflow.lazy import go\n    return go()\n",
        "cimflow/pkg/helper.py": "from ..shared import VALUE\n",
        "cimflow/shared.py": "VALUE = 1\n",
        "cimflow/lazy.py": "def go():\n    return 1\n",
        "cimflow/unused.py": "X = 1\n",
    })
    assert sources.closure(["cimflow.pkg.main"]) == [
        "cimflow", "cimflow.lazy", "cimflow.pkg", "cimflow.pkg.helper", "cimflow.pkg.main", "cimflow.shared"]


def test_not_behaviour_modules_are_neither_hashed_nor_followed(tmp_path):
    sources = _tree(tmp_path, {
        "cimflow/config.py": "from cimflow.only_config import X\n",
        "cimflow/only_config.py": "X = 1\n",
        "cimflow/stage.py": "from cimflow.config import load_params\n",
    })
    assert sources.closure(["cimflow.stage"]) == ["cimflow", "cimflow.stage"]


def test_refresh_rewrites_only_a_changed_fingerprint(tmp_path):
    path = tmp_path / "code" / "x.json"
    first = fingerprint.Fingerprint("x", {"src/a.py": "1"})
    assert fingerprint.refresh(path, first)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert not fingerprint.refresh(path, fingerprint.Fingerprint("x", {"src/a.py": "1"}))
    assert path.stat().st_mtime_ns == 1_000_000_000  # unchanged: Snakemake sees nothing new
    assert fingerprint.refresh(path, fingerprint.Fingerprint("x", {"src/a.py": "2"}))


def test_summaries_cache_is_used_only_while_the_file_is_unchanged(tmp_path):
    sources = _tree(tmp_path, {"cimflow/a.py": "X = 1\n"})
    before = sources.fingerprint("a", ["cimflow.a"]).digest
    sources.save_cache()
    (tmp_path / "src/cimflow/a.py").write_text("X = 22\n")  # new size (and mtime)
    assert fingerprint.Sources(tmp_path).fingerprint("a", ["cimflow.a"]).digest != before


def _project_prints(root: Path) -> dict[str, str]:
    sources = fingerprint.Sources(root)
    return {stage: fingerprint.stage_fingerprint(stage, sources).digest for stage in STAGES}


def test_each_stage_holds_what_it_runs():
    sources = fingerprint.Sources(ROOT)
    files = {stage: set(fingerprint.stage_fingerprint(stage, sources).files) for stage in STAGES}
    assert {s for s, f in files.items() if "src/cimflow/cim/energy.py" in f} == CIM_STAGES
    assert {s for s, f in files.items() if "src/cimflow/compress/admm/solver.py" in f} == {
        "admm_prune", "admm_filter", "admm_quantize", "admm_binarize", "magnitude_prune", "sweep_prune"}
    assert {s for s, f in files.items() if "src/cimflow/compress/dynasty/params.py" in f} == {"dynasty_train"}
    assert {s for s, f in files.items() if "src/cimflow/data/mnist.py" in f} == {"prepare", "prepare_target"}
    assert "src/cimflow/params/train.py" in files["train"] and "src/cimflow/params/train.py" not in files["report"]
    assert not any(f"src/cimflow/{m}.py" in f for f in files.values() for m in ("config", "cli", "methods"))
    assert "src/cimflow/cim/_kernel_core.pxi" in files["map"]  # the compiled kernel's included source


def test_edits_rerun_only_the_stages_that_run_them(tmp_path):
    """Against a copy of the project's sources: docstrings in config.py and cim/simulator.py
    change no fingerprint; a constant in cim/energy.py changes the CiM stages' only; a new
    method (its subpackage, params section, table entries and CLI command) changes none."""
    shutil.copytree(ROOT / "src" / "cimflow", tmp_path / "src" / "cimflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    src = tmp_path / "src" / "cimflow"
    before = _project_prints(tmp_path)

    def edit(rel: str, old: str, new: str) -> None:
        path = src / rel
        text = path.read_text()
        assert old in text, f"{rel} no longer contains {old!r}"
        path.write_text(text.replace(old, new, 1))

    edit("config.py", '"""Load and validate params.yaml', '"""Load and check params.yaml')
    edit("cim/simulator.py", '"""', '"""Reworded. ')
    assert _project_prints(tmp_path) == before

    (src / "compress/newmethod").mkdir()
    (src / "compress/newmethod/__init__.py").write_text('"""A new method."""\n')
    (src / "compress/newmethod/params.py").write_text(
        "from cimflow.schema import StrictModel\n\n\nclass NewParams(StrictModel):\n    strength: float\n")
    edit("config.py", "    dynasty: DynastyParams\n", "    dynasty: DynastyParams\n    newmethod: NewParams\n")
    edit("config.py", "from cimflow.errors import", "from cimflow.compress.newmethod.params import NewParams\n"
         "from cimflow.errors import")
    edit("methods.py", '        Method("dynasty_int8"', '        Method("newmethod", "newmethod_train", (layout.MODEL,)),\n'
         '        Method("dynasty_int8"')
    edit("stages/__init__.py", '        Stage("export"', '        Stage("newmethod_train", ("threads", "newmethod")),\n'
         '        Stage("export"')
    edit("cli.py", '    add("check-params"', '    add("newmethod_train", help="a new method")\n    add("check-params"')
    assert _project_prints(tmp_path) == before

    edit("cim/energy.py", 'ops = 2.0 * counts["macs"]', 'ops = 2.5 * counts["macs"]')
    after = _project_prints(tmp_path)
    assert {stage for stage in STAGES if after[stage] != before[stage]} == CIM_STAGES


def test_model_fingerprint_follows_a_user_file_or_a_cimflow_module(tmp_path):
    user = tmp_path / "models" / "mynet.py"
    user.parent.mkdir()
    user.write_text("class MyNet:\n    '''doc'''\n")
    sources = _tree(tmp_path, {"cimflow/models/__init__.py": "", "cimflow/models/net.py": "from cimflow import errors\n",
                               "cimflow/errors.py": ""})
    by_file = fingerprint.model_fingerprint("t", ModelRef("MyNet", file="models/mynet.py"), sources)
    assert list(by_file.files) == ["models/mynet.py"]
    by_module = fingerprint.model_fingerprint("t", ModelRef("Net", module="cimflow.models.net"), sources)
    assert set(by_module.files) == {"src/cimflow/__init__.py", "src/cimflow/errors.py",
                                    "src/cimflow/models/__init__.py", "src/cimflow/models/net.py"}
    assert fingerprint.model_fingerprint("t", ModelRef("Other", module="othermodels.net"), sources).files == {}


def test_fingerprint_command_refreshes_and_rejects_an_unknown_task(tmp_path, capsys, monkeypatch):
    from cimflow.cli import main

    shutil.copytree(ROOT / "src" / "cimflow", tmp_path / "src" / "cimflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["fingerprint", "nosuchtask"]) == 2
    assert "no train.<task> entry for nosuchtask" in capsys.readouterr().err
    assert not (tmp_path / fingerprint.CODE_DIR).exists()
    assert main(["fingerprint"]) == 0
    assert (tmp_path / fingerprint.stage_path("map")).is_file()
    assert (tmp_path / fingerprint.model_path("digits")).is_file()
    assert main(["fingerprint"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "fingerprints: 0 rewritten"


def test_no_module_imports_a_lazily_loaded_name():
    """A package that loads names lazily (a module-level ``__getattr__``, as cimflow.cim
    does) hides the module behind the name from a static import closure, so code must
    import such names from their modules."""
    import ast

    src = ROOT / "src"
    lazy = {".".join(p.relative_to(src).parent.parts) for p in src.rglob("__init__.py")
            if "def __getattr__" in p.read_text()}
    offenders = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in lazy and node.level == 0:
                package_dir = src.joinpath(*node.module.split("."))
                offenders += [f"{path.relative_to(ROOT)}: from {node.module} import {a.name}" for a in node.names
                              if not ((package_dir / f"{a.name}.py").is_file()
                                      or (package_dir / a.name / "__init__.py").is_file()
                                      or (package_dir / f"{a.name}.pyx").is_file())]
    assert lazy and not offenders, offenders
