"""MLflow tracking switches: stages run unchanged without it, and bad switches are named."""

from __future__ import annotations

import pytest

from cimflow import tracking
from cimflow.errors import CimflowError


def test_tracking_off_runs_the_stage_body_and_writes_no_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CIMFLOW_TRACKING", "off")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    output = tmp_path / "out.json"
    output.write_text("{}")
    with tracking.stage_run("train", {"seed": 0}, [output], task="digits", method="baseline") as run:
        run.log_metrics({"test_accuracy": 0.5}, step=1)
        run.log_outputs([output])
    assert run.run_id is None
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_tracking_switch_is_named(monkeypatch):
    monkeypatch.setenv("CIMFLOW_TRACKING", "maybe")
    with pytest.raises(CimflowError, match="CIMFLOW_TRACKING='maybe'"):
        with tracking.stage_run("train", {}, []):
            pass


def test_compare_filters_and_groups_runs_by_seed(tmp_path, monkeypatch, capsys):
    """Runs tagged with their seed: `compare --seed` picks one, `--over-seeds` averages them."""
    from cimflow.compare import compare

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("CIMFLOW_EXPERIMENT", "compare-test")
    monkeypatch.chdir(tmp_path)
    for seed, accuracy in ((0, 0.90), (1, 0.94)):
        with tracking.stage_run("evaluate", {"evaluate": {"batch_size": 8}}, [], task="digits", method="baseline",
                                seed=seed) as run:
            run.log_metrics({"float_accuracy": accuracy})
    runs = tracking.search_stage_runs("digits", "baseline", "evaluate", 10, seed=1)
    assert [r["tags"]["cimflow.seed"] for r in runs] == ["1"]
    assert compare("digits", None, None, None, 10, as_json=False, over_seeds=True) == 0
    table = capsys.readouterr().out
    assert "0,1" in table and "0.9200" in table  # the seeds and their mean accuracy
