"""Failures a user can cause end in one clear line, a FAILED MLflow run where one was open, and no output."""

from __future__ import annotations

import re
import socket

import pytest

from conftest import make_mini_project, run_stage


def _runs(uri: str):
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("latentlab")
    return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.parametrize("script, args, overrides, dataset, stage_name", [
    ("train_numpy_mlp.py", (), {"numpy_mlp.lr": 10.0, "numpy_mlp.momentum": 0.0, "numpy_mlp.epochs": 2},
     "fashion_mnist_28", "train_numpy_mlp"),
    ("train_classifier.py", ("lenet",), {"classifiers.lenet.lr": 10.0, "classifiers.lenet.momentum": 0.0,
                                          "classifiers.lenet.epochs": 2}, "fashion_mnist_32", "train_classifier@lenet"),
])
@pytest.mark.slow
def test_diverging_training_stops_cleanly(prepared, tmp_path, mlflow_store, script, args, overrides, dataset,
                                         stage_name):
    root = make_mini_project(tmp_path / "proj", prepared, overrides, {dataset: 2000})
    uri = mlflow_store
    result = run_stage(root, script, *args, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert f"{stage_name}: training loss became" in last and re.search(r"at epoch [12];", last) and "Traceback" not in result.stderr
    assert not (root / "models").exists() and not (root / "metrics").exists() and not (root / "plots").exists()
    runs = _runs(uri)
    assert [r.info.status for r in runs] == ["FAILED"]


def test_closed_tracking_port_fails_before_training(prepared, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = make_mini_project(tmp_path / "proj", prepared, {"numpy_mlp.epochs": 50}, {"fashion_mnist_28": 2000})
    result = run_stage(root, "train_numpy_mlp.py", env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"latentlab train_numpy_mlp: error: MLflow tracking server http://127.0.0.1:{port} "
                                     "is unreachable ([Errno 111] Connection refused); start it, or unset "
                                     "MLFLOW_TRACKING_URI to use the local SQLite store")
    assert not (root / "models").exists()
