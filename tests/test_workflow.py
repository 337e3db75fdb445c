"""Both front ends over one DAG: lint, dvc.yaml parity, end-to-end runs, rerun triggers,
MLflow against a real tracking server, byte-identical outputs across front ends, and the
results shared through local-folder and S3 DVC remotes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from cimflow import layout
from cimflow.fingerprint import CODE_DIR
from conftest import BIN, ROOT, copy_project, edit_params, run, tool_env


def test_snakemake_lint_passes():
    result = run(["snakemake", "--lint"], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_dvc_yaml_is_current():
    result = run(["cimflow", "dvc-yaml", "--check"], cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_dvc_and_snakemake_job_graphs_are_identical():
    from dvc.repo import Repo

    from cimflow.dvcgen import FINGERPRINT_STAGE, snakemake_jobs

    jobs = snakemake_jobs(ROOT / "Snakefile")
    sm_edges = {(job.name, up) for job in jobs for up in job.upstream}
    with Repo(str(ROOT)) as repo:
        stages = {s.addressing: s for s in repo.index.stages}
        dvc_edges = {(u.addressing, v.addressing) for u, v in repo.index.graph.edges()}
        # DVC's one extra stage refreshes the code fingerprints every job depends on
        # (Snakemake refreshes them when it parses the workflow).
        assert set(stages) == {job.name for job in jobs} | {FINGERPRINT_STAGE}
        assert dvc_edges - {(job.name, FINGERPRINT_STAGE) for job in jobs} == sm_edges
        fingerprints = {o.def_path for o in stages[FINGERPRINT_STAGE].outs}
        assert {dep for job in jobs for dep in job.deps if dep.startswith("results/code/")} == fingerprints
        assert all(any(dep in fingerprints for dep in job.deps) for job in jobs)
        # The tables and whole-file validation decide which jobs run; no stage hashes them.
        shared = {f"src/cimflow/{m}" for m in ("config.py", "cli.py", "methods.py", "stages/__init__.py")}
        assert not shared & {dep.def_path for stage in stages.values() for dep in stage.deps}
        for job in jobs:
            stage = stages[job.name]
            assert stage.cmd == job.cmd
            assert sorted(o.def_path for o in stage.outs) == sorted(job.outs)
            dvc_params = {key for dep in stage.deps if hasattr(dep, "params") for key in dep.params}
            assert dvc_params == set(job.params)


def test_only_evaluation_stages_read_the_test_split():
    """No training, compression, export or mapping job declares a test split as input,
    in either front end; the evaluation stages do (so the pattern is the right one)."""
    from dvc.repo import Repo

    from cimflow.dvcgen import snakemake_jobs
    from cimflow.stages import EVALUATION_STAGES

    test_file = re.compile(re.escape(layout.PREPARED_TEST).replace(re.escape("{task}"), r"[^/]+") + "$")
    jobs = snakemake_jobs(ROOT / "Snakefile")
    readers = {job.name.split("-")[0] for job in jobs if any(test_file.match(dep) for dep in job.deps)}
    assert readers == EVALUATION_STAGES
    with Repo(str(ROOT)) as repo:
        dvc_readers = {stage.name.split("-")[0] for stage in repo.index.stages
                       if any(test_file.match(dep.def_path) for dep in stage.deps)}
    assert dvc_readers == EVALUATION_STAGES


def _hashes(project: Path, patterns: list[str]) -> dict[str, str]:
    files = sorted(p for pattern in patterns for p in project.glob(pattern) if p.is_file())
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _planned_rules(dry_run_output: str) -> set[str]:
    return set(re.findall(r"^rule (\w+):", dry_run_output, flags=re.M)) - {"all"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, server: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            pass
        assert server.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not answer"
        time.sleep(0.5)


def _stop(server: subprocess.Popen) -> None:
    """Stop a server started by a test, by its PID."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A temporary git repository holding a smoke copy of the project (with its .dvc/)."""
    path = copy_project(tmp_path_factory.mktemp("smoke") / "project")
    assert (path / ".dvc" / "config").is_file(), "the project's .dvc/ must be committed"
    result = run(["git", "init", "-q"], cwd=path)
    assert result.returncode == 0, result.stderr
    return path


ARTIFACTS = ["results/**/*.safetensors", "results/**/*.parquet", "results/**/*.json", "reports/*.md",
             "reports/*.html", "reports/*.png"]


@pytest.mark.slow
def test_snakemake_smoke_pipeline_logs_to_mlflow_server(project, tmp_path):
    """The whole DAG through snakemake at --cores 8, tracked by a real `mlflow server` on
    loopback: one finished run per job."""
    port = _free_port()
    server = subprocess.Popen(
        ["mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--default-artifact-root", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{uri}/health", server, "mlflow server")

        # Eight cores on this two-core machine: up to four jobs log to the server at once.
        result = run(["snakemake", "--cores", "8"], cwd=project, MLFLOW_TRACKING_URI=uri,
                     CIMFLOW_PIPELINE_ID="smoke-1")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        metrics = json.loads((project / "results/digits/seed0/baseline/metrics.json").read_text())
        assert metrics["parameters"] == 431_080 and 0.0 <= metrics["int8_accuracy"] <= 1.0
        summary = (project / layout.REPORT_MD).read_text()
        assert "| digits | baseline | 1 |" in summary and "## Paired differences" in summary
        point = json.loads((project / "results/digits/seed0/sweep/admm_prune/x50/metrics.json").read_text())
        assert point["weight_compression"] >= 50 and "| digits | admm_prune | 50x | 1 |" in summary
        pruned, quantized = (json.loads((project / f"results/digits/seed0/{m}/metrics.json").read_text())
                             for m in ("admm_prune", "admm_quant"))
        # Same masks, 3-bit codes kept exactly by the export: the true size is well below 8-bit sparse.
        assert quantized["nonzero_weights"] == pruned["nonzero_weights"]
        assert quantized["stored_bytes"] < 0.8 * pruned["stored_bytes"] and "3b" in quantized["storage_encoding"]

        import mlflow

        mlflow.set_tracking_uri(uri)
        runs = mlflow.search_runs(experiment_names=["cimflow"], filter_string="tags.`cimflow.pipeline_id` = 'smoke-1'",
                                  output_format="list")
        stages = sorted(r.data.tags["cimflow.stage"] for r in runs)
        assert set(stages) == {"prepare", "train", "admm_prune", "admm_filter", "admm_quantize", "dynasty_train",
                               "export", "evaluate",
                               "calibrate", "map", "evaluate_cim", "cim_sweep", "sweep_prune", "evaluate_sweep",
                               "report"}
        assert len(stages) == 31  # every job of the smoke DAG but the `all` target
        assert {r.info.status for r in runs} == {"FINISHED"}  # no failed or unfinished run
        # Filter pruning removed whole filters: a smaller network, fewer conversions on the chip.
        dense, shrunk = (json.loads((project / f"results/digits/seed0/{m}/{f}").read_text())
                         for m, f in (("baseline", "cim_metrics.json"), ("admm_filter", "cim_metrics.json")))
        filtered = json.loads((project / "results/digits/seed0/admm_filter/metrics.json").read_text())
        assert filtered["parameters"] < 0.5 * metrics["parameters"] and filtered["weight_compression"] > 2
        assert shrunk["conversions_per_inference"] < 0.5 * dense["conversions_per_inference"]
        evaluate = next(r for r in runs if r.data.tags["cimflow.stage"] == "evaluate"
                        and r.data.tags["cimflow.method"] == "baseline")
        assert evaluate.data.metrics["int8_accuracy"] == pytest.approx(metrics["int8_accuracy"])
        assert evaluate.data.tags["cimflow.task"] == "digits" and evaluate.data.tags["cimflow.seed"] == "0"
        assert evaluate.data.params["evaluate.confidence_level"] == "0.95"
        assert any(k.startswith("cimflow.input.results/") for k in evaluate.data.tags)
        artifacts = mlflow.artifacts.list_artifacts(run_id=evaluate.info.run_id,
                                                    artifact_path="results/digits/seed0/baseline")
        assert [a.path for a in artifacts] == ["results/digits/seed0/baseline/metrics.json"]
    finally:
        _stop(server)


@pytest.mark.slow
def test_snakemake_reruns_exactly_what_an_edit_affects(project):
    first = run(["snakemake", "--cores", "2"], cwd=project)  # no-op if the server test ran first
    assert first.returncode == 0, first.stderr[-3000:]
    noop = run(["snakemake", "-n"], cwd=project)
    assert "Nothing to be done" in noop.stdout + noop.stderr

    edit_params(project, "evaluate.confidence_level", 0.9)
    planned = run(["snakemake", "-n"], cwd=project)
    assert _planned_rules(planned.stdout) == {"evaluate", "evaluate_cim", "evaluate_sweep", "report"}
    edit_params(project, "evaluate.confidence_level", 0.95)

    def edit(rel: str, old: str, new: str) -> str:
        path = project / rel
        original = path.read_text()
        assert old in original, f"{rel} no longer contains {old!r}"
        path.write_text(original.replace(old, new, 1))
        return original

    # Docstrings and comments change no behaviour: nothing reruns.
    originals = {rel: edit(rel, old, new) for rel, old, new in (
        ("src/cimflow/config.py", '"""Load and validate', '"""Load and check'),
        ("src/cimflow/cim/simulator.py", '"""', '"""Reworded. '),
        ("src/cimflow/report.py", "\n", "\n# a comment\n"),
    )}
    noop = run(["snakemake", "-n"], cwd=project)
    assert "Nothing to be done" in noop.stdout + noop.stderr, noop.stdout[-3000:]
    # A constant of the energy model: the CiM stages and the report, nothing else.
    originals["src/cimflow/cim/energy.py"] = edit("src/cimflow/cim/energy.py", 'ops = 2.0 * counts["macs"]',
                                                  'ops = 2.5 * counts["macs"]')
    planned = run(["snakemake", "-n"], cwd=project)
    assert _planned_rules(planned.stdout) == {"map", "evaluate_cim", "cim_sweep", "report"}
    for rel, text in originals.items():
        (project / rel).write_text(text)
    restored = run(["snakemake", "-n"], cwd=project)
    assert "Nothing to be done" in restored.stdout + restored.stderr


@pytest.mark.slow
def test_a_new_seed_adds_jobs_and_reruns_none(project):
    """Seeds are a wildcard: asking for seed 1 beside a finished seed 0 plans seed-1 jobs
    (and the report over both), never a seed-0 job."""
    first = run(["snakemake", "--cores", "2"], cwd=project)
    assert first.returncode == 0, first.stderr[-3000:]
    planned = run(["snakemake", "-n", "--config", "seeds=[0,1]"], cwd=project)
    assert planned.returncode == 0, planned.stderr[-3000:]
    seeds = re.findall(r"wildcards:.*?seed=(\d+)", planned.stdout)
    assert seeds and set(seeds) == {"1"}
    assert "prepare" not in _planned_rules(planned.stdout) and "report" in _planned_rules(planned.stdout)


@pytest.mark.slow
def test_the_venv_s_snakemake_runs_jobs_without_activating_it(project):
    """Rules call `cimflow` from Snakemake's own environment (cimflow.jobenv), and so does
    the lock record after the run: nothing of the venv needs to be on PATH."""
    first = run(["snakemake", "--cores", "2"], cwd=project)
    assert first.returncode == 0, first.stderr[-3000:]
    env = tool_env(PATH="/usr/bin:/bin")
    result = subprocess.run([str(BIN / "snakemake"), "--cores", "1", "--forcerun", "report"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Finished job" in result.stderr and "stages recorded" in result.stdout + result.stderr


@pytest.mark.slow
def test_dvc_knows_what_snakemake_finished_and_matches_it_byte_for_byte(project):
    """After a Snakemake run DVC's lock records it (cimflow.dvclock): `dvc status` is
    clean, a params edit reruns only its dependents under `dvc repro`, and a forced DVC
    run of the whole DAG writes the same bytes as Snakemake."""
    ran = run(["snakemake", "--cores", "2"], cwd=project)
    assert ran.returncode == 0, ran.stderr[-3000:]
    snakemake_outputs = _hashes(project, ARTIFACTS)
    status = run(["dvc", "status"], cwd=project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout[-3000:]

    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        names = {s.name for s in repo.index.stages}
    dependents = {n for n in names if n.startswith(("evaluate-", "evaluate_cim-", "evaluate_sweep-"))} | {"report"}
    assert len(dependents) == 2 * 5 + 1 + 1  # five methods, the one sweep point, the report
    for level in (0.9, 0.95):  # the edit, then back
        edit_params(project, "evaluate.confidence_level", level)
        edited = run(["dvc", "repro"], cwd=project)
        assert edited.returncode == 0, edited.stdout[-3000:]
        # Back at a committed value, DVC restores the outputs from its run cache instead of running.
        rerun = re.findall(r"Running stage '([\w-]+)'|Stage '([\w-]+)' is cached - skipping run", edited.stdout)
        assert {ran or cached for ran, cached in rerun} == dependents
        for stage in names - dependents:
            assert f"Stage '{stage}' didn't change, skipping" in edited.stdout
    assert _hashes(project, ARTIFACTS) == snakemake_outputs

    full = run(["dvc", "repro", "--force"], cwd=project)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    assert _hashes(project, ARTIFACTS) == snakemake_outputs  # same bytes from either front end
    noop = run(["dvc", "repro"], cwd=project)
    assert "Data and pipelines are up to date" in noop.stdout

    # A docstring in a module only the CiM stages run: DVC reruns its fingerprint stage,
    # which rewrites nothing, and no stage after it.
    simulator = project / "src/cimflow/cim/simulator.py"
    original = simulator.read_text()
    simulator.write_text(original.replace('"""', '"""Reworded. ', 1))
    stamps = {p: p.stat().st_mtime_ns for p in (project / "results/code").glob("[!.]*.json")}  # not the cache
    edited = run(["dvc", "repro"], cwd=project)
    assert edited.returncode == 0, edited.stdout[-3000:]
    assert set(re.findall(r"Running stage '([\w-]+)'", edited.stdout)) == {"fingerprint"}
    status = run(["dvc", "status"], cwd=project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    # The fingerprints were kept, not rewritten: Snakemake sees no code change either.
    assert stamps and {p: p.stat().st_mtime_ns for p in stamps} == stamps


def _commit_all(project: Path, message: str) -> None:
    for args in (["add", "-A"], ["-c", "user.name=cimflow", "-c", "user.email=ci@cimflow.invalid", "commit", "-qm",
                                 message, "--allow-empty"]):
        result = run(["git", *args], cwd=project)
        assert result.returncode == 0, result.stdout + result.stderr


def _push_clone_pull(project: Path, clone: Path, remote: list[list[str]], **env: str) -> None:
    """The sharing round trip: the finished smoke DAG pushed to a remote, the repository
    cloned, the results pulled; then neither front end has anything to do."""
    ran = run(["snakemake", "--cores", "2"], cwd=project)
    assert ran.returncode == 0, ran.stderr[-3000:]
    for args in remote:
        result = run(["dvc", "remote", *args], cwd=project)
        assert result.returncode == 0, result.stderr
    pushed = run(["dvc", "push", "-r", "store"], cwd=project, **env)
    assert pushed.returncode == 0, pushed.stdout[-3000:] + pushed.stderr[-3000:]
    _commit_all(project, "results")
    cloned = run(["git", "clone", "-q", str(project), str(clone)], cwd=project)
    assert cloned.returncode == 0, cloned.stderr
    assert not (clone / "results").exists()

    pulled = run(["dvc", "pull", "-r", "store"], cwd=clone, **env)
    assert pulled.returncode == 0, pulled.stdout[-3000:] + pulled.stderr[-3000:]
    synced = run(["snakemake", "--cores", "1", "--touch"], cwd=clone)  # `make dvc-sync`: pulled files are new
    assert synced.returncode == 0, synced.stdout[-3000:] + synced.stderr[-3000:]
    planned = run(["snakemake", "-n"], cwd=clone)
    assert "Nothing to be done" in planned.stdout + planned.stderr, planned.stdout[-3000:]
    status = run(["dvc", "status"], cwd=clone)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout[-3000:]
    def pulled_artifacts(root: Path) -> dict[str, str]:  # results/code is recomputed, not pulled
        return {k: v for k, v in _hashes(root, ARTIFACTS[:3]).items() if not k.startswith(f"{CODE_DIR}/")}

    assert pulled_artifacts(clone) == pulled_artifacts(project)
    verified = run(["cimflow", "verify"], cwd=clone)
    assert verified.returncode == 0 and "0 damaged" in verified.stdout, verified.stdout + verified.stderr


@pytest.mark.slow
def test_results_round_trip_through_a_local_folder_remote(project, tmp_path):
    _push_clone_pull(project, tmp_path / "clone", [["add", "-f", "store", str(tmp_path / "store")]])


@pytest.mark.slow
def test_results_round_trip_through_an_s3_remote(project, tmp_path):
    """The same round trip against a real S3 API: moto's server on 127.0.0.1, started here
    and stopped by its PID."""
    import boto3

    port = _free_port()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], cwd=tmp_path,
                              env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"AWS_ACCESS_KEY_ID": "cimflow", "AWS_SECRET_ACCESS_KEY": "cimflow-secret",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        _wait_http(endpoint, server, "moto server")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="cimflow", aws_secret_access_key="cimflow-secret")
        s3.create_bucket(Bucket="cimflow-results")
        _push_clone_pull(project, tmp_path / "clone", [["add", "-f", "store", "s3://cimflow-results/smoke"],
                                                       ["modify", "store", "endpointurl", endpoint]], **credentials)
        stored = s3.list_objects_v2(Bucket="cimflow-results", Prefix="smoke/")
        assert stored["KeyCount"] > 50  # every cached output went to the bucket
    finally:
        _stop(server)


@pytest.mark.slow
def test_the_slurm_profile_s_resources_reach_a_cluster_executor(project, tmp_path):
    """profiles/slurm with its executor swapped for cluster-generic and a submit wrapper
    (tests/cluster) that starts each job as its own process: every job goes through the
    wrapper with the resources the profile and the rules declare (a GPU for training)."""
    import yaml

    profile = yaml.safe_load((ROOT / "profiles/slurm/profile.yaml").read_text())
    wrappers = ROOT / "tests/cluster"
    profile |= {
        "executor": "cluster-generic", "jobs": 4, "latency-wait": 5,
        "cluster-generic-submit-cmd": f"{wrappers}/submit.sh --cpus={{threads}} --mem={{resources.mem_mb}} "
                                      f"--time={{resources.runtime}} --gpus={{resources.gpu}} "
                                      f"--partition={{resources.slurm_partition}}",
        "cluster-generic-status-cmd": f"{wrappers}/status.sh",
    }
    profile["default-resources"] |= {"gpu": 0}  # rules without a GPU ask for none
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster/profile.yaml").write_text(yaml.safe_dump(profile))
    queue = tmp_path / "queue"
    queue.mkdir()

    ran = run(["snakemake", "--workflow-profile", str(tmp_path / "cluster"), "--forcerun", "admm_quant"],
              cwd=project, CIMFLOW_QUEUE=str(queue))
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    jobs = {path.stem: dict(line.lstrip("-").split("=", 1) for line in path.read_text().split())
            for path in queue.glob("*.args")}
    by_rule = {re.search(r"rule (\w+)", (queue / f"{job}.log").read_text()).group(1): asked
               for job, asked in jobs.items()}
    assert set(by_rule) == {"admm_quant", "export", "evaluate", "map", "evaluate_cim", "report"}
    assert all((queue / f"{job}.rc").read_text().strip() == "0" for job in jobs)
    training = {k: v for k, v in by_rule["admm_quant"].items() if k != "cpus"}  # cpus: params.yaml `threads`
    assert training == {"mem": "8000", "time": "720", "gpus": "1", "partition": "your-gpu-partition"}
    assert by_rule["evaluate"]["gpus"] == "0" and by_rule["evaluate"]["partition"] == "your-partition"


@pytest.mark.slow
def test_dvc_experiments_compare_a_params_change(project):
    """`dvc exp run -S` on any params key reruns its dependents; `dvc exp show`, `dvc params
    diff`, `dvc metrics diff` and `dvc plots diff` compare it with the committed run."""
    ran = run(["snakemake", "--cores", "2"], cwd=project)
    assert ran.returncode == 0, ran.stderr[-3000:]
    _commit_all(project, "committed run")

    exp = run(["dvc", "exp", "run", "-n", "adc6", "-S", "cim.macro.adc_bits=6"], cwd=project)
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    rerun = {ran or cached for ran, cached in re.findall(
        r"Running stage '([\w-]+)'|Stage '([\w-]+)' is cached - skipping run", exp.stdout)}
    assert "calibrate" in rerun and "report" in rerun
    assert not {s for s in rerun if s.startswith(("prepare", "baseline", "export", "evaluate-"))}

    table = run(["dvc", "exp", "show", "--csv"], cwd=project)
    assert table.returncode == 0, table.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    bits = {row["Experiment"] or row["rev"]: row["cim.macro.adc_bits"] for row in rows}
    assert bits["adc6"] == "6" and bits["workspace"] == "6" and "8" in bits.values(), bits  # 8: the commit
    params = run(["dvc", "params", "diff", "--md"], cwd=project)
    assert re.search(r"\| params\.yaml\s*\| cim\.macro\.adc_bits\s*\| 8\s*\| 6\s*\|", params.stdout), params.stdout
    metrics = run(["dvc", "metrics", "diff", "--md"], cwd=project)
    assert "cim_metrics.json" in metrics.stdout and "metrics.json" in metrics.stdout, metrics.stdout[-3000:]
    assert "results/digits/seed0/baseline/metrics.json" not in metrics.stdout  # float accuracy did not move
    plots = run(["dvc", "plots", "diff", "-o", "plots-diff"], cwd=project)
    assert plots.returncode == 0 and (project / "plots-diff" / "index.html").is_file(), plots.stderr[-3000:]
