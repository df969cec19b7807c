"""A stage that cannot finish leaves nothing under a final name and says why in one line.

Each case kills or corrupts for real: a stage script in a small project (real data, tiny params) is
sent SIGTERM just after it has written its model, is given NaN params, unusable weight files (a
malicious pickle among them), or a params.yaml that changes under it.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, make_mini_project, run_stage
from test_runs import _leftovers, _runs, _start_and_wait_running
from latentlab.models import classifiers

AE_OUTPUTS = ["models/ae_mnist/base.pt", "metrics/ae_mnist/base.json", "plots/ae_mnist/base.csv"]


def _one_line(result: subprocess.CompletedProcess, stage: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("latentlab ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"latentlab {stage}: error: "), lines[0]
    return lines[0]


@pytest.mark.slow
def test_sigterm_just_after_the_model_is_written_leaves_no_output(prepared, tmp_path, mlflow_store):
    root = make_mini_project(tmp_path, prepared, {"ae_mnist.variants.base.epochs": 2,
                                                  "ae_mnist.variants.base.hidden": [64]}, {"mnist": 2000})
    proc = subprocess.Popen([sys.executable, str(REPO / "stages" / "train_ae_mnist.py"), "base"], cwd=root,
                            env=dict(os.environ, MLFLOW_TRACKING_URI=mlflow_store), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    models = root / "models" / "ae_mnist"
    deadline = time.monotonic() + 180
    while not list(models.glob(".base.pt.*")):  # the model, written under its temporary name
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stage never wrote its model"
        time.sleep(0.005)
    proc.send_signal(signal.SIGSTOP)  # hold it right there, then end it
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "latentlab train_ae_mnist: terminated (SIGTERM); no output was half-written"
    assert not [out for out in AE_OUTPUTS if (root / out).exists()]
    assert not _leftovers(root)
    [run] = _runs(mlflow_store, "train_ae_mnist@base")
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("key, value", [("ae_mnist.latent_grid.low", float("nan")),
                                        ("ae_mnist.latent_grid.high", float("inf")),
                                        ("fetch.timeout_s", float("inf")),
                                        ("vae.kl_weight", float("-inf"))])
def test_nan_and_infinite_params_are_refused_in_one_line(prepared, tmp_path, mlflow_store, key, value):
    root = make_mini_project(tmp_path, prepared, {key: value}, {"mnist": 100})
    text = (root / "params.yaml").read_text()
    assert ".nan" in text or ".inf" in text  # YAML's own spelling, as a user would write it
    result = run_stage(root, "train_ae_mnist.py", "base", env={"MLFLOW_TRACKING_URI": mlflow_store})
    assert result.returncode == 2
    line = _one_line(result, "train_ae_mnist")
    assert key.split(".")[-1] in line and "finite" in line, line
    assert not (root / "models").exists() and _runs(mlflow_store, "train_ae_mnist@base") == []


class _Payload:
    """Unpickling this runs a shell command: what a hostile weights file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_weights(kind: str, path: Path, marker: Path) -> str:
    """Write a `kind` of unusable weights file at `path`; return what params' `weights` should name."""
    if kind == "/etc/passwd":
        return "/etc/passwd"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind in ("truncated", "another network"):
        torch.manual_seed(0)
        net = classifiers.build("mynet" if kind == "another network" else "lenet")
        torch.save(net.state_dict(), path)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "malicious pickle":
        with open(path, "wb") as f:
            pickle.dump({"conv1.weight": _Payload(marker)}, f)
    elif kind == "malicious torch file":  # the same payload inside torch's own zip format
        torch.save({"conv1.weight": _Payload(marker)}, path)
    return str(path.relative_to(path.parents[1]))


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "another network", "/etc/passwd",
                                  "malicious pickle", "malicious torch file"])
def test_unusable_weights_before_extract_are_one_line_and_exit_2(prepared, tmp_path, mlflow_store, kind):
    marker = tmp_path / "payload-ran"
    root = tmp_path / "p"
    weights = _bad_weights(kind, root / "models" / "lenet.pt", marker)
    make_mini_project(root, prepared, {"extract.models.lenet.weights": weights, "extract.per_class": 15},
                      {"fashion_mnist_32": 2000, "fashion_mnist_28": 2000})
    result = run_stage(root, "extract.py", "lenet", env={"MLFLOW_TRACKING_URI": mlflow_store})
    assert result.returncode == 2, result.stderr
    line = _one_line(result, "extract")
    assert weights in line and "dvc repro" in line, line
    assert not marker.exists(), "the pickle's payload ran"
    assert not (root / "data" / "activations").exists() and not _leftovers(root)


@pytest.mark.slow
def test_params_changed_during_the_stage_fail_it_and_its_run_is_not_finished(prepared, tmp_path, mlflow_store):
    root = make_mini_project(tmp_path, prepared, {"ae_mnist.variants.base.epochs": 6,
                                                  "ae_mnist.variants.base.hidden": [64]}, {"mnist": 4000})
    proc = _start_and_wait_running(root, mlflow_store, "train_ae_mnist@base", "base")
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("kl_weight: 0.02", "kl_weight: 0.5"))  # another study's knob
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    line = _one_line(subprocess.CompletedProcess([], 2, "", err), "train_ae_mnist")
    assert "params.yaml changed while the stage ran" in line
    [run] = _runs(mlflow_store, "train_ae_mnist@base")
    assert run.info.status == "FAILED"
    assert not [out for out in AE_OUTPUTS if (root / out).exists()] and not _leftovers(root)


def test_broken_yaml_names_the_line_where_the_construct_starts(prepared, tmp_path, mlflow_store):
    root = make_mini_project(tmp_path, prepared, None, {"mnist": 100})
    params = root / "params.yaml"
    lines = params.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("latent_grid:"))
    lines[at + 1] = "    low: [-5.0, ?"
    params.write_text("\n".join(lines) + "\n")
    result = run_stage(root, "train_ae_mnist.py", "base", env={"MLFLOW_TRACKING_URI": mlflow_store})
    assert result.returncode == 2
    line = _one_line(result, "train_ae_mnist")
    assert f"params.yaml: not valid YAML at line {at + 2}" in line and line.endswith("fix the syntax"), line
