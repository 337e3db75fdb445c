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
