"""MLflow tracking: one run per stage job, tagged so runs can be traced and compared.

The store defaults to a SQLite file in the project (``sqlite:///mlflow.db``) and follows
MLFLOW_TRACKING_URI unchanged, so the same pipeline logs to a shared server. Parallel
jobs on a fresh SQLite file race while creating the schema, so the first job creates
schema and experiment under a file lock and the rest wait for it.

``CIMFLOW_TRACKING=off`` runs stages without MLflow (a GPU or cluster node that lacks
it): outputs are unchanged, only the run records are skipped. A tracking server is
contacted when a stage opens its run (before it trains or writes), retried with backoff, and a server that stays
down fails the stage with a message saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from cimflow.artifacts import file_sha256
from cimflow.errors import CimflowError

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "cimflow"
PIPELINE_ENV = "CIMFLOW_PIPELINE_ID"
TRACKING_ENV = "CIMFLOW_TRACKING"
ATTEMPTS_ENV = "CIMFLOW_TRACKING_ATTEMPTS"
MAX_ARTIFACT_BYTES = 64 * 2**20  # larger outputs are recorded by hash only


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def tracking_enabled() -> bool:
    value = os.environ.get(TRACKING_ENV, "on").lower()
    if value not in ("on", "off"):
        raise CimflowError(f"{TRACKING_ENV}={value!r}: expected 'on' or 'off'")
    return value == "on"


def experiment_name() -> str:
    return os.environ.get("CIMFLOW_EXPERIMENT") or DEFAULT_EXPERIMENT


def pipeline_id() -> str:
    """Id grouping the runs of one pipeline invocation (set by the Snakefile or make)."""
    return os.environ.get(PIPELINE_ENV) or f"single-{uuid.uuid4().hex[:12]}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def params_hash(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def _attempts() -> int:
    value = os.environ.get(ATTEMPTS_ENV, "6")
    if not value.isdigit() or int(value) < 1:
        raise CimflowError(f"{ATTEMPTS_ENV}={value!r}: expected a positive integer")
    return int(value)


def _experiment_id() -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(experiment_name())
    return experiment.experiment_id if experiment is not None else mlflow.create_experiment(experiment_name())


def _reach_server(uri: str) -> str:
    """The experiment id from a tracking server, retried with doubling waits (1, 2, 4, ...
    s; ``CIMFLOW_TRACKING_ATTEMPTS`` tries, 6 by default) when the stage opens its run,
    before it trains or writes anything: a server that stays down fails the stage loudly
    and early, so no computed artifact is lost waiting on it."""
    from mlflow.exceptions import MlflowException

    attempts, waited = _attempts(), 0.0
    for attempt in range(attempts):
        if attempt:
            time.sleep(2.0 ** (attempt - 1))
            waited += 2.0 ** (attempt - 1)
        try:
            with _env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
                return _experiment_id()
        except (MlflowException, OSError) as exc:
            error = exc
    raise CimflowError(
        f"tracking server {uri} unreachable after {attempts} attempts over {waited:.0f} s "
        f"({type(error).__name__}); start it, or run untracked with {TRACKING_ENV}=off"
    )


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Environment variables set for the block only (where the user has not set them)."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def ensure_experiment() -> str:
    """Create store schema and experiment once; safe under parallel jobs."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        return _reach_server(uri)
    lock_dir = Path(uri.removeprefix("sqlite:///")).parent if uri.startswith("sqlite:///") else Path(".")
    with FileLock(str(lock_dir / ".mlflow-init.lock"), timeout=300):
        return _experiment_id()


class StageRun:
    """Handle given to a stage for logging metrics and output files (no-ops untracked)."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.run_id is None:
            return
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_outputs(self, paths: list[Path]) -> None:
        if self.run_id is None:
            return
        import mlflow

        for path in paths:
            if path.stat().st_size <= MAX_ARTIFACT_BYTES:
                mlflow.log_artifact(str(path), artifact_path=str(path.parent))
            else:
                mlflow.set_tag(f"output_sha256.{path}", file_sha256(path))


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: Mapping[str, Any],
    inputs: list[Path],
    task: str = "",
    method: str = "",
    seed: int | None = None,
) -> Iterator[StageRun]:
    """Open an MLflow run for one stage job with the standard cimflow tags."""
    if not tracking_enabled():
        yield StageRun(None)
        return
    import mlflow

    experiment_id = ensure_experiment()
    tags = {
        "cimflow.stage": stage,
        "cimflow.task": task,
        "cimflow.method": method,
        "cimflow.seed": "" if seed is None else str(seed),
        "cimflow.git_commit": git_commit(),
        "cimflow.params_hash": params_hash(params),
        "cimflow.pipeline_id": pipeline_id(),
    }
    tags |= {f"cimflow.input.{p}": file_sha256(p)[:16] for p in inputs}
    name = "/".join(x for x in (stage, task, method, "" if seed is None else f"seed{seed}") if x)
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_params({k: json.dumps(v) if isinstance(v, list) else v for k, v in flatten(params).items()})
        yield StageRun(run.info.run_id)


def search_stage_runs(task: str | None, method: str | None, stage: str | None, max_results: int,
                      seed: int | None = None) -> list[dict]:
    """Runs of the cimflow experiment, newest first, as plain dicts (tags, params, metrics)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(experiment_name())
    if experiment is None:
        return []
    clauses = [f"tags.`cimflow.{key}` = '{value}'" for key, value in
               (("task", task), ("method", method), ("stage", stage),
                ("seed", None if seed is None else str(seed))) if value]
    runs = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=" and ".join(clauses),
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
        output_format="list",
    )
    return [
        {
            "run_id": r.info.run_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
            "params": dict(r.data.params),
            "metrics": dict(r.data.metrics),
        }
        for r in runs
    ]
