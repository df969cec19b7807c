"""MLflow tracking: params and per-epoch metrics land in the store; a raising stage is marked FAILED."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from latentlab.runtime import reproducible, tracking
from latentlab.runtime.errors import LatentlabError


def _client():
    import mlflow

    return mlflow.tracking.MlflowClient()


def test_run_records_params_metrics_and_tags(mlflow_store, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "tidy-kiwi")
    with tracking.start_run("toy", {"toy": {"lr": 0.1, "sizes": [1, 2]}}) as run:
        for epoch in (1, 2):
            run.log_epoch(epoch, {"loss": 1.0 / epoch})
    got = _client().get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"toy.lr": "0.1", "toy.sizes": "[1, 2]"}
    assert got.data.tags["dvc.exp_name"] == "tidy-kiwi" and got.data.tags["dvc.stage"] == "toy"
    history = _client().get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5)]


def test_a_run_shorter_than_the_sampling_interval_still_records_the_machine(mlflow_store, monkeypatch):
    """MLflow's monitor publishes after its first interval (5 s here); a quicker stage gets one sample
    at its end, so every run says what hardware it ran on (the GPU's metrics too, where there is one)."""
    monkeypatch.setenv("LATENTLAB_SYSTEM_METRICS_INTERVAL_S", "30")
    with tracking.start_run("toy", {}) as run:
        run.log_metrics({"loss": 1.0})
    metrics = _client().get_run(run.run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    assert [m.step for m in _client().get_metric_history(run.run_id, "system/cpu_utilization_percentage")] == [0]


def test_raising_stage_marks_run_failed(mlflow_store):
    with pytest.raises(RuntimeError):
        with tracking.start_run("toy", {}) as run:
            raise RuntimeError("boom")
    assert _client().get_run(run.run_id).info.status == "FAILED"


def test_a_stage_without_torch_is_tagged_with_the_cpu_and_never_loads_it(mlflow_store):
    """NumPy and figure stages record where they ran without paying torch's import to ask."""
    code = ("import sys, latentlab\nfrom latentlab.runtime import tracking\n"
            "with tracking.start_run('numpy_only', {}) as run:\n    pass\n"
            "print(run.run_id, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    run_id, torch_loaded = out.stdout.split()
    assert torch_loaded == "False"
    import mlflow

    tags = mlflow.tracking.MlflowClient(tracking_uri=mlflow_store).get_run(run_id).data.tags
    assert tags["device"] == "cpu" and tags["device.name"] == reproducible.cpu_name()


def test_closed_port_fails_fast_with_clear_message(monkeypatch):
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(LatentlabError, match=f"MLflow tracking server http://127.0.0.1:{port} is unreachable"):
        with tracking.start_run("toy", {}):
            pytest.fail("the body must not run")  # refused before any work, not after retries
