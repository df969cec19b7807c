"""The services of the stack, declared: what each runs, the ports it takes, when it is ready, how it
stops and what it needs first. `supervisor` starts and stops any of them the same way; the code only
one service needs is in its own module (`postgres`, `objectstore`).

The table's order is the start order: a service comes after the ones it needs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

from latentlab.runtime.liveness import http_problem

from . import objectstore, postgres
from latentlab.runtime.errors import LatentlabError

from .config import Config, write_private
from .supervisor import venv_tool


@dataclass(frozen=True)
class Ready:
    """One readiness check, polled until it holds: `what` names it in the error when it never does."""
    what: str
    test: Callable[[Config], bool]
    timeout: float


def answers(port: str, path: str = "/", ok_only: bool = False) -> Callable[[Config], bool]:
    """The check that the stack's port `port` serves HTTP at `path` (with a 2xx status when `ok_only`)."""
    return lambda cfg: http_problem(f"http://{cfg.local}:{cfg.ports[port]}{path}", ok_only=ok_only) is None


@dataclass(frozen=True)
class Daemon:
    """A server that puts itself in the background and keeps its own pid file, run through its control tool."""
    start: Callable[[Config], None]
    running: Callable[[Config], bool]
    stop: Callable[[Config], None]


@dataclass(frozen=True)
class Service:
    name: str
    summary: Callable[[Config], str]  # one phrase for status lines: where it serves, where its data is
    ports: tuple[str, ...]  # names in Config.ports
    loopback: bool = False  # listens on 127.0.0.1 whatever LATENTLAB_STACK_HOST says
    needs: tuple[str, ...] = ()
    prepare: Callable[[Config], None] | None = None  # before it starts: a refusal here starts nothing
    command: Callable[[Config], tuple[list[str], dict | None]] | None = None  # what is spawned, its environment
    daemon: Daemon | None = None  # instead of `command`
    ready: tuple[Ready, ...] = ()
    setup: Callable[[Config, subprocess.Popen | None], None] | None = None  # once ready: what it serves
    stop_signal: int = signal.SIGTERM
    stop_grace: float = 30  # seconds from stop_signal to SIGKILL
    cleanup: Callable[[Config], None] | None = None  # after it stopped: what it leaves behind


def _mlflow_auth(cfg: Config) -> None:
    """MLflow's basic-auth app: one team login, its admin; nobody else may read or write (NO_PERMISSIONS)."""
    import importlib.util

    if importlib.util.find_spec("flask_wtf") is None:
        raise LatentlabError("MLflow's login needs the mlflow[auth] extra (Flask-WTF): pip install Flask-WTF "
                             "(make setup does)")
    private = cfg.dir / "mlflow-auth"  # its users' password hashes: the owner's alone
    private.mkdir(mode=0o700, exist_ok=True)
    os.chmod(private, 0o700)
    write_private(private / "basic_auth.ini", "\n".join([
        "[mlflow]", "default_permission = NO_PERMISSIONS",
        f"database_uri = sqlite:///{private / 'users.db'}",
        f"admin_username = {cfg.mlflow_user}", f"admin_password = {cfg.mlflow_password}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth", ""]))


def _mlflow_command(cfg: Config) -> tuple[list[str], dict]:
    mlflow = venv_tool("mlflow")
    cmd = [mlflow] if mlflow else [sys.executable, "-m", "mlflow"]
    env = dict(os.environ, MLFLOW_BACKEND_STORE_URI=cfg.backend_uri,  # not on the command line: a password
               MLFLOW_AUTH_CONFIG_PATH=str(cfg.dir / "mlflow-auth" / "basic_auth.ini"), MLFLOW_FLASK_SERVER_SECRET_KEY=cfg.mlflow_secret,
               MLFLOW_S3_ENDPOINT_URL=f"http://{cfg.local}:{cfg.ports['s3']}", AWS_ACCESS_KEY_ID=cfg.access_key,
               AWS_SECRET_ACCESS_KEY=cfg.secret_key, AWS_DEFAULT_REGION="us-east-1",
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # GenAI job runners: five more processes
    for name in ("MLFLOW_TRACKING_URI", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    return cmd + ["server", "--app-name", "basic-auth", "--host", cfg.host or "0.0.0.0", "--port", str(cfg.ports["mlflow"]),
                  "--workers", str(cfg.mlflow_workers), "--serve-artifacts",
                  "--artifacts-destination", f"s3://{cfg.bucket}/mlflow"], env


TABLE = (
    Service(
        name="db",  # PostgreSQL: MLflow's backend store
        summary=lambda cfg: f"PostgreSQL on 127.0.0.1:{cfg.ports['db']}, data in {postgres.pg_dir(cfg) / 'data'}",
        ports=("db",), loopback=True,
        prepare=postgres.init,
        daemon=Daemon(start=postgres.start, running=postgres.running, stop=postgres.stop),  # start waits
        setup=postgres.create_database),
    Service(
        name="s3",  # SeaweedFS: DVC's remote and MLflow's artifacts
        summary=lambda cfg: f"S3 at {cfg.s3_endpoint}, bucket {cfg.bucket}, data in {cfg.dir / 's3'}",
        ports=objectstore.PORTS,
        prepare=objectstore.prepare,
        command=objectstore.command,
        ready=(Ready("SeaweedFS S3", answers("s3"), 90),
               Ready("SeaweedFS volumes", objectstore.volumes_loaded, 90)),
        setup=objectstore.ensure_bucket,
        stop_signal=signal.SIGINT,  # weed ends on SIGINT, not SIGTERM; its filer waits up to 15 s for gRPC streams
        cleanup=objectstore.remove_sockets),
    Service(
        name="mlflow",  # the tracking server; proxies artifacts, so clients need no S3 credentials
        summary=lambda cfg: f"MLflow at {cfg.tracking_uri}",
        ports=("mlflow",),
        needs=("db", "s3"),
        prepare=_mlflow_auth,
        command=_mlflow_command,
        ready=(Ready("MLflow server", answers("mlflow", "/health", ok_only=True), 180),)),
)

SERVICES = tuple(service.name for service in TABLE)
BY_NAME = {service.name: service for service in TABLE}
