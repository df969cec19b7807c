"""Runs a user can trust: byte-stable outputs, MLflow runs that end, writes that fail cleanly.

Each test runs a real stage script in a small project (real data, tiny params) as DVC would.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, make_mini_project, run_stage
from latentlab.runtime import io, reproducible

TINY_AE = {"ae_mnist.variants.base.epochs": 2, "ae_mnist.variants.base.hidden": [64]}


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs(uri: str, stage: str):
    client = _client(uri)
    experiment = client.get_experiment_by_name("latentlab")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`dvc.stage` = '{stage}'")


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.tmp*")]


def test_same_weights_save_to_the_same_bytes(tmp_path, monkeypatch):
    torch.manual_seed(0)
    weights = torch.nn.Linear(30, 20).state_dict()
    io.save_torch(tmp_path / "a.pt", weights)
    io.save_torch(tmp_path / "sub" / "b.pt", weights)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "sub" / "b.pt").read_bytes()
    loaded = io.load_torch(tmp_path / "a.pt")
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    io.save_npz(tmp_path / "a.npz", x=np.arange(5.0))
    later = time.time() + 86_400  # zip members can carry a time stamp: a day later, the same bytes
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "localtime", lambda secs=None: time.gmtime(later if secs is None else secs))
    io.save_npz(tmp_path / "b.npz", x=np.arange(5.0))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


@pytest.mark.parametrize("hash_seed", range(6))
def test_stage_processes_run_the_pinned_blas_kernels(tmp_path, hash_seed):
    """Whatever the import order, a stage computes with the same OpenBLAS kernels on every x86-64 CPU.

    NumPy loaded before latentlab (unpinned) and SciPy after it (pinned): every OpenBLAS must end up
    pinned under any string-hash seed, as threadpoolctl lists the libraries in hash order.
    """
    if not reproducible.pinnable():
        pytest.skip("no AVX2/FMA x86-64 CPU: nothing to pin")
    script = tmp_path / "stages" / "probe.py"
    script.parent.mkdir()
    script.write_text("import numpy\nfrom latentlab.runtime import stage\nimport scipy.linalg\n"
                      "from threadpoolctl import threadpool_info\n"
                      "stage.run('probe', lambda params: sorted(i['architecture'] for i in threadpool_info()\n"
                      "                                         if i['internal_api'] == 'openblas'))\n")
    make_mini_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "LATENTLAB_REEXECUTED")}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**env, "PYTHONHASHSEED": str(hash_seed)},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"latentlab probe: {[reproducible.CORETYPE] * 2} ")


def _start_and_wait_running(root, mlflow_store, stage_name, *args):
    proc = subprocess.Popen([sys.executable, str(REPO / "stages" / "train_ae_mnist.py"), *args], cwd=root,
                            env=dict(os.environ, MLFLOW_TRACKING_URI=mlflow_store), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(r.info.status == "RUNNING" for r in _runs(mlflow_store, stage_name)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stage never opened its MLflow run"
        time.sleep(0.3)
    time.sleep(1.0)  # inside the training loop
    return proc


@pytest.mark.slow
def test_stages_started_together_on_a_new_store_all_record_their_runs(tmp_path):
    """`dvc queue start -j 2` on a fresh clone: two stages create the SQLite store's tables at once
    (without the lock, one or both of them failed in each of three tries)."""
    code = ("from latentlab.runtime import tracking\n"
            "with tracking.start_run('probe@' + __import__('sys').argv[1], {'a': 1}):\n    pass\n")
    store = f"sqlite:///{tmp_path / 'new.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, MLFLOW_TRACKING_URI=store))
             for i in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 2, errors
    experiment = _client(store).get_experiment_by_name("latentlab")
    runs = _client(store).search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"probe@{i}" for i in range(2)]
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.fixture
def long_ae(prepared, tmp_path):
    return make_mini_project(tmp_path, prepared, {"ae_mnist.variants.base.epochs": 500,
                                                  "ae_mnist.variants.base.hidden": [64]}, {"mnist": 2000})


@pytest.mark.slow
def test_sigterm_ends_the_run_failed_with_one_line(long_ae, mlflow_store):
    proc = _start_and_wait_running(long_ae, mlflow_store, "train_ae_mnist@base", "base")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == ("latentlab train_ae_mnist: terminated (SIGTERM); no output was "
                                            "half-written")
    assert "Traceback" not in err
    [run] = _runs(mlflow_store, "train_ae_mnist@base")
    assert run.info.status == "FAILED"
    assert not (long_ae / "models" / "ae_mnist" / "base.pt").exists() and not _leftovers(long_ae)


@pytest.mark.slow
def test_sigkilled_run_is_closed_as_killed_when_the_stage_next_starts(long_ae, mlflow_store):
    proc = _start_and_wait_running(long_ae, mlflow_store, "train_ae_mnist@base", "base")
    proc.kill()
    proc.communicate(timeout=60)
    [ghost] = _runs(mlflow_store, "train_ae_mnist@base")
    assert ghost.info.status == "RUNNING"  # nothing could close it
    params = (long_ae / "params.yaml").read_text().replace("epochs: 500", "epochs: 1")
    (long_ae / "params.yaml").write_text(params)
    result = run_stage(long_ae, "train_ae_mnist.py", "base", env={"MLFLOW_TRACKING_URI": mlflow_store})
    assert result.returncode == 0, result.stderr
    runs = {r.info.run_id: r for r in _runs(mlflow_store, "train_ae_mnist@base")}
    closed = runs[ghost.info.run_id]
    assert closed.info.status == "KILLED"
    assert "ended without closing this run" in closed.data.tags["latentlab.closed_reason"]
    assert sorted(r.info.status for r in runs.values()) == ["FINISHED", "KILLED"]


def test_unwritable_output_folder_fails_before_training(prepared, tmp_path, mlflow_store):
    root = make_mini_project(tmp_path, prepared, TINY_AE, {"mnist": 1000})
    (root / "models").write_text("a file where the models folder should be")
    start = time.monotonic()
    result = run_stage(root, "train_ae_mnist.py", "base", env={"MLFLOW_TRACKING_URI": mlflow_store})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("latentlab train_ae_mnist: error: output folder models/ae_mnist is not writable")
    assert _runs(mlflow_store, "train_ae_mnist@base") == []  # refused before any training or run
    assert time.monotonic() - start < 30


@pytest.mark.slow
def test_write_failure_at_save_time_is_one_line_and_leaves_no_partial_file(prepared, tmp_path, mlflow_store):
    """A disk that fills up while the model is saved: RLIMIT_FSIZE makes the write fail the same way."""
    root = make_mini_project(tmp_path, prepared, {"ae_mnist.variants.base.epochs": 1,
                                                  "ae_mnist.variants.base.hidden": [1024, 512]}, {"mnist": 1000})
    limit = 2_000_000  # the model is ~5 MB; everything before it (the MLflow store included) is smaller

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run([sys.executable, str(REPO / "stages" / "train_ae_mnist.py"), "base"], cwd=root,
                            env=dict(os.environ, MLFLOW_TRACKING_URI=mlflow_store), capture_output=True, text=True,
                            preexec_fn=small_disk, timeout=300)
    assert result.returncode == 2, result.stderr
    [line] = [l for l in result.stderr.strip().splitlines() if l.startswith("latentlab")]
    assert "models/ae_mnist/base.pt: cannot be written" in line and "Traceback" not in result.stderr
    assert not (root / "models" / "ae_mnist" / "base.pt").exists() and not _leftovers(root)
    [run] = _runs(mlflow_store, "train_ae_mnist@base")
    assert run.info.status == "FAILED"
