"""How long a no-op `snakemake -n` takes after a complete run, for the default DAG and
larger ones (about 250 and 500 jobs); issue 12's targets: under 3 s and, for 200 jobs,
under 5 s on 2 cores.

A complete run is staged without training anything: in a copy of the project every
job's outputs are created in topological order and `snakemake --touch` records them, so
the dry run that follows has nothing to do and measures only what Snakemake and the
workflow's parse-time code (params validation, code fingerprints) cost. It prints the
median of several runs and its ratio to Snakemake's own floor (`snakemake -n` of a
one-rule workflow in the same directory), and the in-process cost of refreshing the
fingerprints with and without the summaries cache.

    .venv/bin/python benchmarks/bench_dry_run.py [--repeats 5] [--project PATH]

``--project`` benchmarks another checkout (e.g. an older commit's worktree, with the
compiled kernels copied into it) with this environment, its own sources first on
PYTHONPATH; without it the working tree is copied.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IGNORE = shutil.ignore_patterns(".venv", ".git", ".snakemake", "results", "logs", "mlruns", "mlflow.db",
                                "__pycache__", "*.c", "build", "*.egg-info", "tmp", "cache")
SIZES = {
    "default DAG": [],
    "2 tasks x 3 seeds": ["--config", "tasks=[digits,mnist]", "seeds=[0,1,2]"],
    "3 tasks x 4 seeds": ["--config", "tasks=[digits,mnist,usps]", "seeds=[0,1,2,3]"],
}


_SOURCES: list[Path] = []  # the benchmarked checkout's src/, imported ahead of the installed cimflow


def _env() -> dict[str, str]:
    return os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                         "PYTHONPATH": os.pathsep.join(map(str, _SOURCES))}


def _snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", *args], cwd=project, env=_env(), capture_output=True, text=True, check=False)


def _stage_complete_run(project: Path, extra: list[str]) -> int:
    """Create every job's outputs (oldest first) and let Snakemake record them; return the job count."""
    listing = subprocess.run(
        [sys.executable, "-c", _LIST_OUTPUTS, *extra], cwd=project, env=_env(), capture_output=True, text=True,
        check=True,
    )
    groups = [line.split("\t") for line in listing.stdout.splitlines() if line]
    stamp = time.time() - 10 * len(groups)
    for i, outputs in enumerate(groups):
        for out in outputs:
            path = project / out
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.utime(path, (stamp + i, stamp + i))
    touched = _snakemake(project, "--touch", "--cores", "1", "--quiet", "all", *extra)
    if touched.returncode != 0:
        raise SystemExit(f"snakemake --touch failed:\n{touched.stderr[-2000:]}")
    return len(groups)


# Run inside the project: one line per job (topological order), its outputs tab-separated.
_LIST_OUTPUTS = """
import sys
from snakemake.api import ConfigSettings, OutputSettings, ResourceSettings, SnakemakeApi
from snakemake.settings.types import Quietness
import contextlib, io
config = {}
args = sys.argv[1:]
if args:
    for item in args[1:]:
        key, value = item.split("=", 1)
        config[key] = [v if not v.isdigit() else int(v) for v in value.strip("[]").split(",")]
with contextlib.redirect_stdout(io.StringIO()), SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(config=config),
                      snakefile="Snakefile")
    workflow = wf._workflow
    wf.dag()
    workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
    workflow._build_dag()
    lines = ["\\t".join(map(str, job.output)) for level in workflow.dag.toposorted() for job in level
             if job.rule.name != "all"]
print("\\n".join(lines))
"""


def _median_dry_run(project: Path, extra: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = _snakemake(project, "-n", "--cores", "2", *extra)
        times.append(time.perf_counter() - start)
        if "Nothing to be done" not in result.stdout + result.stderr:
            raise SystemExit(f"the dry run is not a no-op:\n{result.stdout[-2000:]}")
    return statistics.median(times)


def _floor(repeats: int) -> float:
    """`snakemake -n` of a one-rule workflow whose output exists: Snakemake's own startup."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "Snakefile").write_text('rule all:\n    output: "done"\n    shell: "touch {output}"\n')
        Path(tmp, "done").touch()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(["snakemake", "-n", "--cores", "2"], cwd=tmp, env=_env(), capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def _fingerprint_refresh(project: Path) -> tuple[float, float] | None:
    """In-process seconds to refresh every fingerprint: cold (no summaries cache), then cached."""
    if not (project / "src/cimflow/fingerprint.py").is_file():
        return None
    code = (
        "import time, os\n"
        "from cimflow import fingerprint\n"
        "from cimflow.config import load_params\n"
        "p = load_params('params.yaml')\n"
        "models = {t: p.train[t].model.to_ref() for t in p.tasks}\n"
        "cache = 'results/code/.summaries.json'\n"
        "os.path.exists(cache) and os.remove(cache)\n"
        "t = time.perf_counter(); fingerprint.refresh_all(models); cold = time.perf_counter() - t\n"
        "t = time.perf_counter(); fingerprint.refresh_all(models); warm = time.perf_counter() - t\n"
        "print(cold, warm)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project, env=_env(), capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--project", type=Path, help="a checkout to benchmark (default: a copy of this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(args.project or ROOT, project, ignore=IGNORE)
        _SOURCES.append(project / "src")
        floor = _floor(args.repeats)
        print(f"snakemake floor (one-rule workflow): {floor:.2f} s (median of {args.repeats})")
        for label, extra in SIZES.items():
            jobs = _stage_complete_run(project, extra)
            seconds = _median_dry_run(project, extra, args.repeats)
            print(f"{label}: {jobs} jobs, no-op `snakemake -n --cores 2` {seconds:.2f} s "
                  f"(median of {args.repeats}), {seconds / floor:.2f}x the floor")
        refresh = _fingerprint_refresh(project)
        if refresh is not None:
            cold, warm = refresh
            print(f"fingerprint refresh in-process: {cold * 1000:.0f} ms cold, {warm * 1000:.0f} ms cached "
                  f"({cold / warm:.1f}x)")


if __name__ == "__main__":
    main()
