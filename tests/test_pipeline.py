"""DVC end to end, in a fresh clone of the committed repository: what a user's `dvc repro` does.

Slow-ish (the clone runs fetch and prepare for real, its first prepare killed mid-write), so everything
that needs a real DVC pipeline shares one clone per test module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from latentlab.data import datasets

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here runs DVC or a server for real


def _env(mirrors) -> dict:
    env = dict(os.environ)
    env.update(LATENTLAB_DATA_MIRRORS=":".join(map(str, mirrors)), LATENTLAB_OFFLINE="1",
               PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    env.pop("DVC_ROOT", None)
    return env


def dvc(clone: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=clone, env=env, capture_output=True,
                            text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


class Clone(NamedTuple):
    path: Path
    env: dict
    killed: dict  # what the SIGKILLed first run left: was it running, `dvc status` after it, the re-run's output


@pytest.fixture(scope="module")
def clone(mirrors, tmp_path_factory, empty_mlflow_store) -> Clone:
    """A fresh clone of HEAD whose first `dvc repro prepare` is SIGKILLed while it writes its outputs, then
    run again to the end, as after a machine that died mid-stage; its MLflow store is private."""
    path = tmp_path_factory.mktemp("clone") / "latentlab"
    subprocess.run(["git", "clone", "-q", str(REPO), str(path)], check=True)
    shutil.copyfile(empty_mlflow_store, path / "mlflow.db")
    env = _env(mirrors)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{path / 'mlflow.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "prepare"], cwd=path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    prepared = path / "data" / "prepared"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # wait until the stage is writing outputs
        if prepared.is_dir() and any(prepared.iterdir()):
            break
        time.sleep(0.05)
    killed = {"mid_run": proc.poll() is None}
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed["status"] = dvc(path, env, "status", "prepare").stdout
    killed["rerun"] = dvc(path, env, "repro", "prepare").stdout
    return Clone(path, env, killed)


def _prepared_checksums(clone: Path) -> dict[str, str]:
    return {name: datasets.content_sha256(datasets.load_prepared(name, clone / "data" / "prepared"))
            for name in ("mnist", "fashion_mnist_32")}


def test_stage_killed_mid_run_then_repro_completes_cleanly(clone):
    """SIGKILL the stage while it writes; the next `dvc repro` re-runs it and uses no partial file."""
    assert clone.killed["mid_run"], "the stage finished before it could be killed"
    assert "prepare" in clone.killed["status"] and "up to date" not in clone.killed["status"]  # not recorded as done
    assert "Running stage 'prepare'" in clone.killed["rerun"]
    prepared = clone.path / "data" / "prepared"
    assert not list(prepared.glob(".*tmp*")), "no temporary file left in the output folder"
    dogs = datasets.load_prepared("dogs", prepared)
    assert len(dogs["x_train"]) + len(dogs["x_test"]) == 14809


def test_repro_matches_recorded_checksums_and_is_then_up_to_date(clone):
    path, env, _ = clone
    recorded = json.loads((path / "metrics" / "data.json").read_text())
    for name, checksum in _prepared_checksums(path).items():
        assert recorded[name]["sha256"] == checksum
    recorded_dogs = datasets.content_sha256(datasets.load_prepared("dogs", path / "data" / "prepared"))
    assert recorded["dogs"]["sha256"] == recorded_dogs
    result = dvc(path, env, "repro", "prepare")
    assert "Data and pipelines are up to date" in result.stdout


def test_prepared_file_deleted_by_hand_is_recreated(clone):
    path, env, _ = clone
    before = _prepared_checksums(path)
    (path / "data" / "prepared" / "mnist.npz").unlink()
    assert "modified:           data/prepared" in dvc(path, env, "status", "prepare").stdout
    dvc(path, env, "repro", "prepare")
    assert _prepared_checksums(path) == before


def _locked_outs(clone: Path, *stages: str) -> dict[str, str]:
    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages for out in lock[stage]["outs"]}


def test_retrained_model_has_the_same_bytes_so_nothing_downstream_goes_stale(clone):
    """`dvc repro -f` of a training stage writes identical files (same md5 in dvc.lock), so the stages
    that read them stay up to date, and a remote would store nothing new."""
    path, env, _ = clone
    params_file = path / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["classifiers"]["lenet"].update(epochs=1, batch_size=1024)  # one short epoch: the bytes are the point
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        dvc(path, env, "repro", "extract@lenet")
        first = _locked_outs(path, "train_classifier@lenet", "extract@lenet")
        dvc(path, env, "repro", "-f", "-s", "train_classifier@lenet")
        assert _locked_outs(path, "train_classifier@lenet", "extract@lenet") == first
        assert "Data and pipelines are up to date." in dvc(path, env, "status", "extract@lenet").stdout
    finally:
        params_file.write_text(original)
