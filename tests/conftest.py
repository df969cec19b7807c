"""Shared fixtures. Tests never touch the network: LATENTLAB_OFFLINE is set for the whole session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
SYSTEM = Path("/usr/share/datasets")

os.environ["LATENTLAB_OFFLINE"] = "1"
# Runs made by tests go to a throwaway store, never the repository's mlflow.db.
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tempfile.mkdtemp(prefix='latentlab-mlflow-')}/mlflow.db"


@pytest.fixture(scope="session")
def mirrors() -> list[Path]:
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"dataset mirror {SHARED} not found (it sits beside the checkout on project machines)")
    if not (SYSTEM / "fashion-mnist").is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed (`make setup` installs it as root)")
    return [SHARED, SYSTEM]


@pytest.fixture(scope="session")
def raw_dir(mirrors, tmp_path_factory) -> Path:
    """data/raw as the fetch stage builds it, from the real mirrors, once per test session."""
    from latentlab import fetch

    dest = tmp_path_factory.mktemp("raw")
    fetch.fetch_all(dest, mirrors=mirrors)
    return dest


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A private SQLite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
