"""`cimflow compare`: tracked runs side by side, filtered by task, method and stage."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd

from cimflow.tracking import search_stage_runs, tracking_uri

# Metrics worth a column in the terminal; --json prints every metric.
HEADLINE_METRICS = ("float_accuracy", "int8_accuracy", "nonzero_parameters", "macs", "int8_bytes", "test_accuracy")


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"


def runs_table(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for run in runs:
        tags = run["tags"]
        row = {
            "started": datetime.fromtimestamp(run["start_time"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "stage": tags.get("cimflow.stage", ""),
            "task": tags.get("cimflow.task", ""),
            "method": tags.get("cimflow.method", ""),
            "pipeline": tags.get("cimflow.pipeline_id", "")[-12:],
            "commit": tags.get("cimflow.git_commit", "")[:8],
            "status": run["status"],
        }
        row |= {m: run["metrics"][m] for m in HEADLINE_METRICS if m in run["metrics"]}
        rows.append(row)
    return pd.DataFrame(rows)


def compare(task: str | None, method: str | None, stage: str | None, max_results: int, as_json: bool) -> int:
    runs = search_stage_runs(task, method, stage, max_results)
    if as_json:
        print(json.dumps(runs, indent=2, sort_keys=True))
        return 0
    if not runs:
        print(f"no runs match in {tracking_uri()}")
        return 0
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(runs_table(runs).to_string(index=False, float_format=_number))
    return 0
