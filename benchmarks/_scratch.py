"""Shared by the benchmarks that run the pipeline's own stage scripts outside DVC, with changed params."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def default_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def scratch(folder: Path, params: dict) -> Path:
    """A folder the stage scripts run in: dvc.yaml (for the stages' names and outputs), `params`, and
    the checkout's prepared data; models, metrics, figures and the MLflow store stay inside it."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "prepared").symlink_to(REPO / "data" / "prepared")
    shutil.copy(REPO / "dvc.yaml", folder / "dvc.yaml")
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def run_stage(folder: Path, script: str, *args: str) -> tuple[str, float]:
    """Run `stages/<script> args` in `folder`: its summary line and wall seconds; a failure ends the benchmark."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the folder's own store
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "stages" / script), *args], check=False, cwd=folder, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{folder.name}: {script} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1], seconds
