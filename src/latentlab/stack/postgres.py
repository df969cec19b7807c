"""PostgreSQL, MLflow's backend store: a cluster of our own, run through pg_ctl.

PostgreSQL refuses to run as root, so as root it runs as a system user (made when none fits), and the
folder holding its data must be reachable by that user. It listens on loopback TCP only, with no unix
socket: MLflow, its one client, runs on the same machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from latentlab.runtime.errors import LatentlabError

from .config import Config, write_private
from . import supervisor
from .supervisor import log_tail


def pg_bin(tool: str) -> str:
    folders = [os.environ["LATENTLAB_PG_BIN"]] if os.environ.get("LATENTLAB_PG_BIN") else []
    folders += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0, reverse=True)
    for folder in folders:
        if (Path(folder) / tool).exists():
            return str(Path(folder) / tool)
    if shutil.which(tool):
        return shutil.which(tool)
    raise LatentlabError("PostgreSQL's server programs are not installed: apt-get install postgresql "
                         "(or set LATENTLAB_PG_BIN to the folder holding pg_ctl)")


def db_user() -> str | None:
    """The OS user PostgreSQL runs as when we are root (it refuses root); None: run it as ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    wanted = os.environ.get("LATENTLAB_STACK_DB_USER")
    for name in ([wanted] if wanted else ["postgres", "latentlab"]):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    name = wanted or "latentlab"
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise LatentlabError(f"cannot create the system user {name} to run PostgreSQL: {made.stderr.strip()}")
    return name


def _as_db_user(cmd: list[str]) -> list[str]:
    user = db_user()
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def pg_dir(cfg: Config) -> Path:
    return cfg.dir / "postgres"


def pg_ctl(cfg: Config, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    cmd = _as_db_user([pg_bin("pg_ctl"), "-D", str(pg_dir(cfg) / "data"), *args])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True,
                          stdin=subprocess.DEVNULL)


def running(cfg: Config) -> bool:
    if not (pg_dir(cfg) / "data" / "PG_VERSION").exists():  # its folder deleted: the pid we recorded
        return supervisor.pid(cfg, "db") is not None
    return pg_ctl(cfg, "status", timeout=30).returncode == 0


def init(cfg: Config) -> None:
    """The cluster, on first start: its superuser `mlflow` has the stack's generated password."""
    folder = pg_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    user = db_user()
    if user:
        shutil.chown(folder, user, user)
        reach = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(folder)], capture_output=True)
        if reach.returncode != 0:
            raise LatentlabError(f"PostgreSQL's user {user} cannot write {folder}: make its parent folders "
                                 "traversable (chmod o+x), or set LATENTLAB_STACK_DIR to another folder")
    os.chmod(folder, 0o700)
    if (folder / "data" / "PG_VERSION").exists():
        return
    pwfile = folder / "initdb.pw"
    write_private(pwfile, cfg.db_password + "\n")
    if user:
        shutil.chown(pwfile, user, user)
    try:
        made = subprocess.run(_as_db_user([pg_bin("initdb"), "-D", str(folder / "data"), "-U", "mlflow",
                                           f"--pwfile={pwfile}", "-A", "scram-sha-256", "-E", "UTF8",
                                           "--no-instructions"]),
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    finally:
        pwfile.unlink(missing_ok=True)
    if made.returncode != 0:
        said = (made.stderr or made.stdout).strip().splitlines()
        raise LatentlabError(f"initdb failed: {said[-1] if said else f'exit status {made.returncode}'}")


def start(cfg: Config) -> None:
    """`pg_ctl start -w`: it returns once the server takes connections, so no readiness poll follows."""
    log = pg_dir(cfg) / "server.log"
    options = f"-c listen_addresses=127.0.0.1 -p {cfg.ports['db']} -c unix_socket_directories=''"
    started = pg_ctl(cfg, "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    if started.returncode != 0:
        raise LatentlabError(f"PostgreSQL did not start; see {log}: {log_tail(log)}")
    postmaster = int((pg_dir(cfg) / "data" / "postmaster.pid").read_text().split()[0])
    supervisor.record_pid(cfg, "db", postmaster)


def create_database(cfg: Config, proc=None) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=cfg.ports["db"], user="mlflow", password=cfg.db_password,
                            dbname="postgres", connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'mlflow'")
            if cur.fetchone() is None:
                cur.execute("CREATE DATABASE mlflow")
    finally:
        conn.close()


def stop(cfg: Config) -> None:
    if not (pg_dir(cfg) / "data" / "PG_VERSION").exists():  # its folder deleted: SIGINT is a fast shutdown
        found = supervisor.pid(cfg, "db")
        if found is not None:
            supervisor.stop_pid(found, signal.SIGINT, grace=30, group=False)
        supervisor.pid_file(cfg, "db").unlink(missing_ok=True)
        return
    stopped = pg_ctl(cfg, "stop", "-m", "fast", "-w", "-t", "60")
    if stopped.returncode != 0 and running(cfg):
        raise LatentlabError(f"PostgreSQL did not stop: {stopped.stderr.strip()}")
