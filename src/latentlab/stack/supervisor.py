"""Start, wait for, stop and ask after any service of the table, one way for all of them.

A process we spawn is known by a pid file holding its pid and start time (pids are reused, start
times are not). It runs in a session of its own, so stopping it reaches the helpers it forked, and
it outlives the command that started it. A server that puts itself in the background through its
own control tool (PostgreSQL with pg_ctl) is asked through that tool instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from latentlab.runtime.errors import LatentlabError
from latentlab.runtime.liveness import started_at

from .config import Config, registry

if TYPE_CHECKING:
    from .services import Service


def venv_tool(name: str) -> str | None:
    """A program installed beside this Python (the venv's bin), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def pid_file(cfg: Config, name: str) -> Path:
    return registry(cfg.dir) / f"{name}.pid"


def log_file(cfg: Config, name: str) -> Path:
    return cfg.dir / "logs" / f"{name}.log"


def record_pid(cfg: Config, name: str, number: int) -> None:
    pid_file(cfg, name).write_text(json.dumps({"pid": number, "started": started_at(number) or 0}))


def pid(cfg: Config, name: str) -> int | None:
    """The pid of our running `name` (a spawned service), checked against its start time."""
    try:
        doc = json.loads(pid_file(cfg, name).read_text())
    except (OSError, ValueError):
        return None
    started = started_at(doc["pid"])
    return doc["pid"] if started is not None and abs(started - doc["started"]) < 1 else None


def spawn(cfg: Config, name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    log = log_file(cfg, name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=cfg.dir)
    record_pid(cfg, name, proc.pid)
    return proc


def log_tail(path: Path, lines: int = 1) -> str:
    """The last non-blank lines of a log, short enough for a one-line error."""
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " / ".join(text[-lines:])[-300:]


def wait_until(what: str, ready, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    """Poll `ready()`; a process that exits meanwhile fails at once, with the last line of its log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise LatentlabError(f"{what} exited at start (status {proc.returncode}); see {log}: {log_tail(log)}")
        if time.monotonic() > deadline:
            raise LatentlabError(f"{what} did not answer within {timeout:.0f} s; see {log}")
        time.sleep(0.3)


def stop_pid(pid: int, first: int, grace: float, group: bool) -> None:
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


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _listen_host(cfg: Config, service: Service) -> str:
    return "127.0.0.1" if service.loopback else cfg.host


def check_ports(cfg: Config, service: Service) -> None:
    """Fail before anything starts when a port is taken: a half-started stack is worse than none."""
    host = _listen_host(cfg, service)
    for name in service.ports:
        port = cfg.ports[name]
        if not port_free(host, port):
            raise LatentlabError(f"port {port} on {host} ({name}) is in use; stop what holds it, or set "
                                 "LATENTLAB_STACK_PORT to the first of ten other free ports")


def _wait_ports_released(cfg: Config, service: Service, timeout: float = 15) -> None:
    """After a stop the kernel may hold a port for a moment; `up` right after must not fail on it."""
    host = _listen_host(cfg, service)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(port_free(host, cfg.ports[n]) for n in service.ports):
        time.sleep(0.2)


def is_running(cfg: Config, service: Service) -> bool:
    if service.daemon is not None:
        return service.daemon.running(cfg)
    return pid(cfg, service.name) is not None


def start(cfg: Config, service: Service) -> None:
    """Prepare, launch, wait for every readiness check in turn, then set up what the service serves."""
    if service.prepare is not None:
        service.prepare(cfg)
    proc = None
    if service.daemon is not None:
        service.daemon.start(cfg)
    else:
        cmd, env = service.command(cfg)
        proc = spawn(cfg, service.name, cmd, env)
    for check in service.ready:
        wait_until(check.what, lambda: check.test(cfg), proc, log_file(cfg, service.name), check.timeout)
    if service.setup is not None:
        service.setup(cfg, proc)


def stop(cfg: Config, service: Service, kill: bool = False) -> None:
    """Stop gracefully (the service's own signal, then SIGKILL after its grace); `kill`: SIGKILL at once."""
    if service.daemon is not None:
        service.daemon.stop(cfg)
    else:
        found = pid(cfg, service.name)
        if found is not None:
            stop_pid(found, signal.SIGKILL if kill else service.stop_signal, grace=service.stop_grace, group=True)
        pid_file(cfg, service.name).unlink(missing_ok=True)
    _wait_ports_released(cfg, service)
    if service.cleanup is not None:
        service.cleanup(cfg)
