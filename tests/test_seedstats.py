"""Statistics over seeds: paired differences and their t intervals, and the report's
and `cimflow compare`'s grouping by seed."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from cimflow.compare import seed_summary
from cimflow.report import paired_table, summary_table
from cimflow.seedstats import paired_difference


def test_paired_difference_is_the_t_interval_of_per_seed_differences():
    a = pd.Series([0.90, 0.92, 0.95], index=[0, 1, 2])
    b = pd.Series([0.91, 0.91, 0.93], index=[0, 1, 2])
    p = paired_difference(a, b, 0.95)
    diff = [-0.01, 0.01, 0.02]
    assert p.seeds == 3 and p.mean == pytest.approx(sum(diff) / 3)
    sem = stats.tstd(diff) / math.sqrt(3)
    assert p.high - p.mean == pytest.approx(stats.t.ppf(0.975, 2) * sem)
    # scipy's paired t-test agrees that this interval contains zero (p > 0.05)
    assert p.low < 0 < p.high and stats.ttest_rel(a, b).pvalue > 0.05


def test_paired_difference_pairs_by_seed_and_has_no_interval_for_one_seed():
    a = pd.Series([0.5, 0.7], index=[4, 9])
    b = pd.Series([0.6, 0.4], index=[9, 4])  # different order: seed 4 -> 0.4, seed 9 -> 0.6
    assert paired_difference(a, b, 0.9).mean == pytest.approx(0.1)
    one = paired_difference(a.iloc[:1], b, 0.95)
    assert one.seeds == 1 and one.mean == pytest.approx(0.1) and math.isnan(one.low)


def _metrics(method: str, seed: int, acc: float) -> dict:
    return {"task": "digits", "method": method, "seed": seed, "float_accuracy": acc, "int8_accuracy": acc - 0.01,
            "parameters": 10, "nonzero_parameters": 5, "weight_compression": 2.0, "macs": 100, "float_bytes": 40,
            "int8_bytes": 10, "stored_bytes": 8, "size_compression": 5.0}


def test_report_pairs_each_method_with_its_reference_seed_by_seed():
    rows = [_metrics("baseline", s, a) for s, a in ((0, 0.95), (1, 0.97), (2, 0.96))]
    rows += [_metrics("admm_prune", s, a) for s, a in ((0, 0.94), (1, 0.95), (2, 0.95))]
    per_seed = pd.DataFrame(rows)
    summary = summary_table(per_seed)
    base = summary.set_index("method").loc["baseline"]
    assert base["seeds"] == 3 and base["float_accuracy"] == pytest.approx(0.96)
    assert base["float_accuracy_std"] == pytest.approx(0.01)
    cim = [{"task": "digits", "method": "baseline", "seed": s, "int8_accuracy": 0.9, "cim_calibrated_accuracy": c}
           for s, c in ((0, 0.89), (1, 0.9), (2, 0.88))]
    paired = paired_table(per_seed, cim, {"baseline": None, "admm_prune": "baseline"}, 0.95)
    admm = paired[(paired["method"] == "admm_prune") & (paired["against"] == "baseline (float)")].iloc[0]
    assert admm["seeds"] == 3 and admm["mean"] == pytest.approx(-0.0133333, abs=1e-6)
    chip = paired[paired["against"] == "calibrated chip vs int8 digital"].iloc[0]
    assert chip["mean"] == pytest.approx(-0.01) and chip["low"] < chip["mean"] < chip["high"]
    assert set(paired["method"]) == {"admm_prune", "baseline"}  # the baseline has no reference of its own


def test_compare_groups_the_newest_run_of_each_seed():
    runs = pd.DataFrame([
        {"started": "2026-01-01 00:00:00", "stage": "evaluate", "task": "digits", "method": "baseline", "seed": "0",
         "status": "FINISHED", "float_accuracy": 0.5},  # superseded by the rerun below
        {"started": "2026-01-02 00:00:00", "stage": "evaluate", "task": "digits", "method": "baseline", "seed": "0",
         "status": "FINISHED", "float_accuracy": 0.9},
        {"started": "2026-01-02 00:00:00", "stage": "evaluate", "task": "digits", "method": "baseline", "seed": "1",
         "status": "FINISHED", "float_accuracy": 0.8},
        {"started": "2026-01-03 00:00:00", "stage": "evaluate", "task": "digits", "method": "baseline", "seed": "2",
         "status": "FAILED", "float_accuracy": 0.1},
    ])
    row = seed_summary(runs).iloc[0]
    assert row["seeds"] == "0,1"
    assert row["float_accuracy mean"] == pytest.approx(0.85)
    assert row["float_accuracy std"] == pytest.approx(0.0707107, abs=1e-6)
