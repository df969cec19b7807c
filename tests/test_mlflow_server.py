"""Tracking against a real `mlflow server` on 127.0.0.1: a short training stage, read back via the client."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here runs DVC or a server for real


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, empty_mlflow_store):
    """A real tracking server with a SQLite backend, stopped after the module's tests."""
    root = tmp_path_factory.mktemp("mlflow-server")
    shutil.copyfile(empty_mlflow_store, root / "server.db")
    port = _free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow_cli), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                             "--artifacts-destination", str(root / "artifacts")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))  # as the stack does: no GenAI job runners
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start within 120 s")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its store is thrown away with tmp_path; no graceful 6 s shutdown
        proc.wait(timeout=30)


def test_training_stage_logs_to_a_real_server(mlflow_server, prepared, tmp_path):
    """The base AE runs as DVC stage train_ae_mnist@base: its run has that name, its params and tags, the
    model as artifact, and every value of its metrics JSON is what MLflow shows as that metric's latest."""
    import json

    import mlflow

    from conftest import make_mini_project, run_stage
    from latentlab.runtime import device

    root = make_mini_project(tmp_path / "proj", prepared, {"ae_mnist.variants.base.epochs": 2,
                                                           "ae_mnist.variants.base.hidden": [64]}, {"mnist": 1000})
    result = run_stage(root, "train_ae_mnist.py", "base", env={"MLFLOW_TRACKING_URI": mlflow_server,
                                                               "DVC_EXP_NAME": "server-check",
                                                               "LATENTLAB_SYSTEM_METRICS_INTERVAL_S": "0.5"})
    assert result.returncode == 0, result.stderr
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("latentlab")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "train_ae_mnist@base" and run.info.status == "FINISHED"
    assert run.data.tags["dvc.stage"] == "train_ae_mnist@base" and run.data.tags["dvc.exp_name"] == "server-check"
    assert run.data.params["ae_mnist.base.epochs"] == "2" and run.data.params["ae_mnist.base.hidden"] == "[64]"
    written = json.loads((root / "metrics" / "ae_mnist" / "base.json").read_text())
    assert "test_psnr" in written and "train_seconds" not in written  # timings live in MLflow only
    for key, value in written.items():
        assert run.data.metrics[key] == pytest.approx(value, abs=0), key
    assert run.data.metrics["test_psnr"] > 5
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_loss")] == [1, 2]
    history = client.get_metric_history(run.info.run_id, "test_psnr")
    assert len(history) == 3 and max(h.step for h in history) == 2  # two epochs, the final value at the last step
    assert run.data.tags["numpy.blas_kernel"] and run.data.tags["machine"]
    expected = device.resolve("auto")  # the committed params say device: auto
    assert run.data.tags["device"] == str(expected) and run.data.tags["device.name"] == device.describe(expected)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["base.pt"]
