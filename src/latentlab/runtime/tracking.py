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
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from latentlab.runtime import params as params_mod
from latentlab.runtime.errors import LatentlabError
from latentlab.runtime.paths import project_root
from latentlab.runtime.liveness import http_problem, started_at

EXPERIMENT = "latentlab"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail before training, not after it, when a tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    reason = http_problem(uri.rstrip("/") + "/health", timeout, ok_only=True)
    if reason is not None:
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
    """The handle a stage logs through; thin on purpose, so stages never import mlflow themselves.

    Metrics are queued with their step and time and sent at once when the store answers; while a
    tracking server is down (a restart) they wait, and `flush` sends them all, so no epoch is lost.
    Final metrics carry the last epoch's step: MLflow shows the value of the highest step as a
    metric's latest, and that must be the final one, as in the stage's metrics JSON.
    """

    def __init__(self, mlflow_module, run):
        self._client = mlflow_module.tracking.MlflowClient()
        self.run_id = run.info.run_id
        self._pending: list = []
        self._step = 0

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._step = max(self._step, epoch)
        self._queue(metrics, epoch)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._queue(metrics, self._step)

    def log_training(self, metrics: dict[str, float], history, model_path: str | os.PathLike) -> None:
        """A training stage's last word: its metrics, the training's speed, and the model file."""
        self.log_metrics({**metrics, **history.speed()})
        self.log_artifact(model_path)

    def log_artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        """Log a file under its final name, also while it is still staged under a temporary one."""
        import shutil
        import tempfile

        from latentlab.runtime import io

        with tempfile.TemporaryDirectory() as scratch:
            source = io.readable(path)
            if source != Path(path):
                source = Path(shutil.copyfile(source, Path(scratch) / Path(path).name))
            self._retry(lambda: self._client.log_artifact(self.run_id, str(source), artifact_path=folder),
                        f"artifact {path}")

    def _queue(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._send()

    def _send(self) -> bool:
        while self._pending:
            batch = self._pending[:1000]
            try:
                self._client.log_batch(self.run_id, metrics=batch)
            except Exception:  # server restarting, network blip: keep them for the next call
                return False
            del self._pending[:len(batch)]
        return True

    def _retry(self, action, what: str) -> None:
        deadline = time.monotonic() + _grace_seconds()
        while True:
            try:
                action()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise LatentlabError(f"MLflow tracking store {tracking_uri()} stopped answering ({what} not "
                                         f"logged: {type(exc).__name__}); start it again and re-run the stage"
                                         ) from None
                time.sleep(2)

    def flush(self) -> None:
        """Send what is queued, waiting out a server restart; a store gone for good is one error line."""
        def send_all():
            if not self._send():
                raise ConnectionError("the tracking store does not answer")

        self._retry(send_all, f"{len(self._pending)} metric values")


def _grace_seconds() -> float:
    """How long a stage waits for a tracking server to come back before it gives up."""
    return float(os.environ.get("LATENTLAB_TRACKING_GRACE_S", "120"))


def machine() -> str:
    """The name runs are tagged with, to tell a team's machines apart (`LATENTLAB_MACHINE` overrides)."""
    return os.environ.get("LATENTLAB_MACHINE") or socket.gethostname()


def _process_tags() -> dict[str, str]:
    import psutil

    from latentlab.runtime.reproducible import blas_architectures

    me = psutil.Process()
    return {"machine": machine(), "latentlab.pid": str(me.pid), "latentlab.pid_start": f"{me.create_time():.2f}",
            "numpy.blas_kernel": ",".join(sorted(blas_architectures())) or "none", **_device_tags()}


def _device_tags() -> dict[str, str]:
    """The device the stage computed on. A stage that never loaded torch (NumPy, scikit-learn and figure
    stages) ran on the CPU: importing torch only to say so would add 1.4-2.2 s to each of them."""
    if "latentlab.runtime.device" not in sys.modules:
        from latentlab.runtime.reproducible import cpu_name

        return {"device": "cpu", "device.name": cpu_name()}
    from latentlab.runtime import device

    dev = device.chosen()
    return {"device": str(dev), "device.name": device.describe(dev)}


def _gone(tags: dict[str, str]) -> bool:
    """True when the process that opened a run on this machine no longer exists (pid reuse included)."""
    if tags.get("machine") != machine() or "latentlab.pid" not in tags:
        return False  # another machine's run, or one that cannot tell: not ours to judge
    started = started_at(int(tags["latentlab.pid"])) if tags["latentlab.pid"].isdigit() else None
    return started is None or f"{started:.2f}" != tags.get("latentlab.pid_start")


def close_ghosts(client, experiment_id: str, stage: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `stage` whose process died without closing them (SIGKILL, power
    loss), so the store never shows a run as running that nothing runs. Returns their ids."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`dvc.stage` = '{stage}' and "
                                                             "attributes.status = 'RUNNING'", max_results=200)
    closed = []
    for run in runs:
        if _gone(run.data.tags):
            client.set_tag(run.info.run_id, "latentlab.closed_reason",
                           f"process {run.data.tags['latentlab.pid']} on {run.data.tags['machine']} ended without "
                           "closing this run (killed or crashed); closed when the stage next started")
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed


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


def _schema_lock(uri: str):
    """Stages started together on a new SQLite store would each create its tables and collide
    (UNIQUE constraint failed); a lock file beside the database lets the first one create them."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()  # a server or database migrates its schema once, itself
    import filelock

    return filelock.FileLock(uri[len("sqlite:///"):] + ".lock", timeout=300)


def _connect():
    """mlflow, pointed at our store, with its first-use schema-migration chatter and the system-metrics
    monitor's start and stop lines (four INFO lines a stage) quieted."""
    for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.system_metrics"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


@contextlib.contextmanager
def start_run(stage: str, params: dict, experiment: str = EXPERIMENT) -> Iterator[Run]:
    """Open an MLflow run named after the DVC stage, params logged and system metrics sampled.

    Before it, runs of the same stage left RUNNING by a killed process are closed as KILLED. The run
    ends FINISHED once every queued metric is stored, FAILED if the body raises (SIGINT, SIGTERM and
    user errors included).
    """
    uri = tracking_uri()
    check_reachable(uri)
    mlflow = _connect()
    try:
        with _schema_lock(uri):
            experiment_id = _experiment_id(mlflow, experiment)
        close_ghosts(mlflow.tracking.MlflowClient(), experiment_id, stage)
    except LatentlabError:
        raise
    except Exception as exc:
        raise LatentlabError(f"MLflow store {uri} cannot be opened ({type(exc).__name__}: {exc})") from None
    tags = {"dvc.stage": stage, **_process_tags()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    from mlflow.system_metrics import set_system_metrics_samples_before_logging, set_system_metrics_sampling_interval

    set_system_metrics_sampling_interval(float(os.environ.get("LATENTLAB_SYSTEM_METRICS_INTERVAL_S", "5")))
    set_system_metrics_samples_before_logging(1)
    active = mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags, log_system_metrics=True)
    run = Run(mlflow, active)
    try:
        mlflow.log_params(flatten(params))
        yield run
        params_mod.check_unchanged()  # a run of other params must not be marked FINISHED as this one
        run.flush()
        system_sample(run.run_id)
    except BaseException:
        _end(mlflow, "FAILED")
        raise
    _end(mlflow, "FINISHED")


def system_sample(run_id: str) -> None:
    """One sample of the machine (CPU, memory, disk, network, and the GPU where there is one) for a run
    that ended before MLflow's monitor logged any: it publishes only after its first interval, so a
    short stage would otherwise carry no record of the hardware it ran on. Best effort: never an error."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        from mlflow.tracking import MlflowClient

        if any(k.startswith("system/") for k in MlflowClient().get_run(run_id).data.metrics):
            return
        monitor = SystemMetricsMonitor(run_id, resume_logging=True)
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception:
        pass


def _end(mlflow_module, status: str) -> None:
    """End the active run; a store that stopped answering must not hide the stage's own error."""
    try:
        mlflow_module.end_run(status=status)
    except Exception:
        pass
