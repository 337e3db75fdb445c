"""MLflow tracking switches: stages run unchanged without it, bad switches are named, a
tracking server that is down fails a stage early and loudly after retries with backoff."""

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


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_a_stage_with_its_tracking_server_down_fails_loudly_and_writes_nothing(tmp_path):
    """Retried with backoff, then exit status 2 with a message naming the server; the
    stage wrote nothing."""
    import shutil
    import subprocess
    import time

    from conftest import ROOT, tool_env

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    uri = f"http://127.0.0.1:{_closed_port()}"
    began = time.monotonic()
    result = subprocess.run(["cimflow", "prepare", "--task", "digits"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=tool_env(MLFLOW_TRACKING_URI=uri, CIMFLOW_TRACKING_ATTEMPTS="3"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"tracking server {uri} unreachable after 3 attempts over 3 s" in result.stderr
    assert time.monotonic() - began >= 3.0  # waited 1 + 2 s between the attempts
    assert not (tmp_path / "results").exists()


def test_bad_attempt_count_is_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("CIMFLOW_TRACKING_ATTEMPTS", "0")
    with pytest.raises(CimflowError, match="CIMFLOW_TRACKING_ATTEMPTS='0'"):
        with tracking.stage_run("train", {}, []):
            pass


@pytest.mark.slow
def test_a_server_that_comes_up_during_the_backoff_gets_the_run(tmp_path, monkeypatch):
    import subprocess

    import mlflow

    from conftest import BIN, tool_env

    port = _closed_port()
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CIMFLOW_TRACKING_ATTEMPTS", "7")  # waits up to 1 + 2 + ... + 32 s
    server = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/s.db",
                               "--default-artifact-root", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"], cwd=tmp_path, env=tool_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with tracking.stage_run("train", {"seed": 0}, [], task="digits", method="baseline") as run:
            run.log_metrics({"val_accuracy": 0.5})
        mlflow.set_tracking_uri(uri)
        assert mlflow.get_run(run.run_id).data.metrics == {"val_accuracy": 0.5}
    finally:
        server.terminate()
        server.wait(timeout=30)
