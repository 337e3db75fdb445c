"""`cimflow compare`: tracked runs side by side, filtered by task, method, stage and seed.

``--over-seeds`` groups the newest run of each (stage, task, method, seed) into one
row per (stage, task, method) with the mean, standard deviation and count over seeds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd

from cimflow.tracking import search_stage_runs, tracking_uri

# Metrics worth a column in the terminal; --json prints every metric.
HEADLINE_METRICS = ("float_accuracy", "int8_accuracy", "cim_calibrated_accuracy", "nonzero_parameters", "macs",
                    "stored_bytes", "val_accuracy")
KEYS = ["stage", "task", "method"]


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
            "seed": tags.get("cimflow.seed", ""),
            "pipeline": tags.get("cimflow.pipeline_id", "")[-12:],
            "commit": tags.get("cimflow.git_commit", "")[:8],
            "status": run["status"],
        }
        row |= {m: run["metrics"][m] for m in HEADLINE_METRICS if m in run["metrics"]}
        rows.append(row)
    return pd.DataFrame(rows)


def seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Newest finished run per seed, then mean/std/count over seeds per stage, task and method."""
    finished = table[(table["status"] == "FINISHED") & (table["seed"] != "")]
    newest = finished.sort_values("started").groupby([*KEYS, "seed"], as_index=False).last()
    metrics = [m for m in HEADLINE_METRICS if m in newest]
    if newest.empty or not metrics:
        return pd.DataFrame(columns=[*KEYS, "seeds"])
    grouped = newest.groupby(KEYS)
    out = grouped["seed"].agg(lambda s: ",".join(sorted(s, key=int))).rename("seeds").to_frame()
    for metric in metrics:
        out[f"{metric} mean"] = grouped[metric].mean()
        out[f"{metric} std"] = grouped[metric].std(ddof=1)
    return out.dropna(axis=1, how="all").reset_index()


def compare(task: str | None, method: str | None, stage: str | None, seed: int | None, max_results: int,
            as_json: bool, over_seeds: bool = False) -> int:
    runs = search_stage_runs(task, method, stage, max_results, seed)
    if as_json:
        print(json.dumps(runs, indent=2, sort_keys=True))
        return 0
    if not runs:
        print(f"no runs match in {tracking_uri()}")
        return 0
    table = runs_table(runs)
    table = seed_summary(table) if over_seeds else table.sort_values([*KEYS, "seed", "started"], kind="stable")
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print(table.to_string(index=False, float_format=_number))
    return 0
