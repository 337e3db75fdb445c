"""Faults, one stage of each kind: `kill -9` mid-run leaves every output absent or whole,
the rerun gives the uninterrupted run's bytes; a damaged input is refused, named.

The stages run as the DAG runs them (the commands and outputs of the smoke project's
dvc.yaml, in its order), without a front end: what is tested is the stage, not Snakemake's
or DVC's bookkeeping (tests/test_workflow.py covers those).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cimflow.verify import LOADERS
from conftest import copy_project, smoke_params, tool_env

pytestmark = pytest.mark.slow

# One stage per kind, by its name in dvc.yaml (rule name, then wildcards).
KINDS = {"prepare": "prepare-digits", "train": "baseline-digits-0", "compress": "admm_prune-digits-0",
         "export": "export-digits-0-baseline", "calibrate": "calibrate", "map": "map-digits-0-baseline",
         "evaluate": "evaluate-digits-0-baseline", "report": "report"}
KILL_AT = 0.6  # share of the stage's uninterrupted wall time for the first kill


def _two_methods(raw: dict) -> dict:
    """The smoke params with the baseline and ADMM pruning only."""
    raw = smoke_params(raw)
    raw["methods"] = ["baseline", "admm_prune"]
    return raw


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _start(cmd: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, shell=True, cwd=cwd, env=tool_env(CIMFLOW_TRACKING="off"), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(cmd: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    proc = _start(cmd, cwd)
    out, err = proc.communicate(timeout=900)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), time.monotonic() - began


def _whole(path: Path) -> bool:
    """The file parses as what it claims to be (artifacts: their content hash too)."""
    if path.suffix in LOADERS:
        LOADERS[path.suffix](path)
    elif path.suffix == ".png":
        Image.open(path).verify()
    else:
        path.read_text(encoding="utf-8")
    return True


def _kill(cmd: str, cwd: Path, outs: list[Path], seconds: float | None) -> list[Path]:
    """Run ``cmd`` and SIGKILL its process group at KILL_AT of ``seconds``, or (None) as soon
    as an output or a temporary of one appears; the outputs present afterwards."""
    def written() -> bool:
        return any(out.exists() or any(out.parent.glob(f".{out.name}.*.tmp")) for out in outs)

    delay = None if seconds is None else KILL_AT * seconds
    for _ in range(4):  # a run faster than the reference one can finish first: kill sooner
        proc = _start(cmd, cwd)
        began = time.monotonic()
        while proc.poll() is None and not (written() if delay is None else time.monotonic() - began >= delay):
            time.sleep(0.002)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
            return [out for out in outs if out.exists()]
        proc.communicate()
        for out in outs:
            out.unlink(missing_ok=True)
        delay = None if delay is None else delay / 2
    pytest.fail(f"{cmd} always finished before the kill")


@pytest.fixture(scope="module")
def dag(tmp_path_factory) -> tuple[Path, dict, dict]:
    """The smoke project with one method, every stage run once in dvc.yaml's order: (project,
    stages by name with cmd and outs, wall seconds per stage)."""
    project = copy_project(tmp_path_factory.mktemp("faults") / "project", _two_methods)
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    seconds = {}
    for name, stage in stages.items():
        result, seconds[name] = _run(stage["cmd"], project)
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    return project, stages, seconds


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_mid_run_leaves_no_half_file_and_the_rerun_gives_the_same_bytes(dag, kind):
    project, stages, seconds = dag
    stage = stages[KINDS[kind]]
    outs = [project / (o if isinstance(o, str) else next(iter(o))) for o in stage["outs"]]
    reference = {out: _sha(out) for out in outs}
    for out in outs:
        out.unlink()

    for when in ("at 60% of its time", "at its first write"):
        survivors = _kill(stage["cmd"], project, outs, seconds[KINDS[kind]] if when.startswith("at 60") else None)
        assert all(_whole(out) for out in survivors)  # each output absent or complete
        print(f"{kind}: killed {when} ({seconds[KINDS[kind]]:.1f} s uninterrupted): "
              f"{len(survivors)}/{len(outs)} outputs present, all whole")
        if when.startswith("at 60"):
            for out in survivors:
                out.unlink()

    rerun, _ = _run(stage["cmd"], project)  # over what the second kill left, as a rerun finds it
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {out: _sha(out) for out in outs} == reference
    debris = list(outs[0].parent.glob(".*.tmp"))
    assert not debris, f"temporaries of the killed run left behind: {debris}"


# A stage that reads each kind's first artifact; the report's outputs are read by nobody
# (and are Markdown, HTML and PNG: DVC's hashes in dvc.lock cover them).
CONSUMERS = {"prepare": "baseline-digits-0", "train": "export-digits-0-baseline",
             "compress": "export-digits-0-admm_prune", "export": "map-digits-0-baseline",
             "calibrate": "map-digits-0-baseline", "map": "evaluate_cim-digits-0-baseline",
             "evaluate": "report"}


@pytest.mark.parametrize("kind", CONSUMERS)
@pytest.mark.parametrize("damage", ["bit flip", "truncation"])
def test_a_damaged_artifact_is_refused_by_its_reader_and_by_verify(dag, kind, damage):
    project, stages, _ = dag
    reader = stages[CONSUMERS[kind]]
    artifact = next(project / d for d in reader["deps"] if d in {o if isinstance(o, str) else next(iter(o))
                                                                   for o in stages[KINDS[kind]]["outs"]})
    original = artifact.read_bytes()
    middle = len(original) // 2
    damaged = original[:middle] + bytes([original[middle] ^ 0x10]) + original[middle + 1:] \
        if damage == "bit flip" else original[: middle]
    outs = [project / (o if isinstance(o, str) else next(iter(o))) for o in reader["outs"]]
    before = {out: _sha(out) for out in outs}
    try:
        artifact.write_bytes(damaged)
        result, _ = _run(reader["cmd"], project)
        assert result.returncode == 2, result.stderr[-3000:]
        assert str(artifact.relative_to(project)) in result.stderr
        assert {out: _sha(out) for out in outs} == before  # the reader wrote nothing
        verified, _ = _run(f"cimflow verify {artifact.parent.relative_to(project)}", project)
        assert verified.returncode == 2 and artifact.name in verified.stderr
    finally:
        artifact.write_bytes(original)
