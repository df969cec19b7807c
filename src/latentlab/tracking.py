"""One place that talks to MLflow, so every stage records its runs the same way.

Default store: SQLite at `<repo>/mlflow.db` with artifacts in `<repo>/mlartifacts`, where `<repo>` is
the real repository (`DVC_ROOT`), also for queued experiments running in a temporary copy;
`MLFLOW_TRACKING_URI` overrides it (a server, another database). Each run is tagged with the DVC stage
and, for `dvc exp run`, the experiment name, and is marked FAILED if the stage raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

from .errors import LatentlabError
from .paths import project_root

EXPERIMENT = "latentlab"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail before training, not after it, when a tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LatentlabError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, or unset "
            "MLFLOW_TRACKING_URI to use the local SQLite store"
        ) from None


def flatten(params: dict, prefix: str = "") -> dict[str, Any]:
    """Nested params as MLflow keys (`vae.kl_weight`); lists become their string form."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:500] if isinstance(value, (list, tuple)) else value
    return flat


class Run:
    """The handle a stage logs through; thin on purpose, so stages never import mlflow themselves."""

    def __init__(self, mlflow_module, run):
        self._mlflow = mlflow_module
        self.run_id = run.info.run_id

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=epoch)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()})

    def log_artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        self._mlflow.log_artifact(str(path), artifact_path=folder)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._mlflow.set_tags(tags)


def _experiment_id(mlflow_module, name: str) -> str:
    client = mlflow_module.tracking.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None  # a server chooses its own artifact store
    uri = mlflow_module.get_tracking_uri()
    if uri.startswith("sqlite:///"):  # artifacts beside the database, never in the cwd's ./mlruns
        location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created meanwhile by a parallel stage
        return client.get_experiment_by_name(name).experiment_id


def _connect():
    """mlflow, pointed at our store, with its first-use schema-migration chatter quieted."""
    for noisy in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def latest_runs(stage_prefix: str, experiment: str = EXPERIMENT) -> list[tuple[str, str, str]]:
    """(stage, run id, status) of the newest run of each stage whose `dvc.stage` tag has this prefix.

    Inside a DVC experiment only that experiment's runs count. Best effort: the report is still worth
    having when the store is unreachable, so errors give an empty list.
    """
    try:
        mlflow = _connect()
        client = mlflow.tracking.MlflowClient()
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1000)
    except Exception:
        return []
    exp_name = os.environ.get("DVC_EXP_NAME")
    newest: dict[str, tuple[str, str, str]] = {}
    for run in runs:
        stage = run.data.tags.get("dvc.stage", "")
        if exp_name and run.data.tags.get("dvc.exp_name") != exp_name:
            continue
        if stage.startswith(stage_prefix) and stage not in newest:
            newest[stage] = (stage, run.info.run_id, run.info.status)
    return sorted(newest.values())


@contextlib.contextmanager
def start_run(stage: str, params: dict, experiment: str = EXPERIMENT) -> Iterator[Run]:
    """Open an MLflow run for `stage` with its params logged; FAILED if the body raises."""
    uri = tracking_uri()
    check_reachable(uri)
    mlflow = _connect()
    try:
        experiment_id = _experiment_id(mlflow, experiment)
    except LatentlabError:
        raise
    except Exception as exc:
        raise LatentlabError(f"MLflow store {uri} cannot be opened ({type(exc).__name__}: {exc})") from None
    tags = {"dvc.stage": stage}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags) as active:
        mlflow.log_params(flatten(params))
        yield Run(mlflow, active)
