"""The stack as a whole: its services brought up in the table's order and down in the reverse one."""

from __future__ import annotations

import time

from latentlab.runtime.errors import LatentlabError

from . import supervisor
from .config import Config, default_dir, from_env, load, registry, require
from .services import BY_NAME, SERVICES


def running(cfg: Config, service: str) -> bool:
    return supervisor.is_running(cfg, BY_NAME[service])


def describe(cfg: Config, service: str) -> str:
    return BY_NAME[service].summary(cfg)


def _services(names, with_needs: bool = False) -> list[str]:
    """The named services (all when none are) in start order; `with_needs`: and what they need."""
    names = list(names or SERVICES)
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise LatentlabError(f"unknown service {unknown[0]!r}; services: {', '.join(SERVICES)}")
    if with_needs:
        todo = list(names)
        while todo:
            for need in BY_NAME[todo.pop()].needs:
                if need not in names:
                    names.append(need)
                    todo.append(need)
    return [s for s in SERVICES if s in names]


def up(cfg: Config | None = None, services=None, say=print) -> Config:
    """Start the services (and what they need) that are not running, in order; running ones are left alone.

    Without `cfg`, a stack with something running keeps its saved settings; else they come from the
    environment. Every port is checked before anything starts."""
    import filelock

    services = _services(services, with_needs=True)
    folder = cfg.dir if cfg is not None else default_dir()
    lock = filelock.FileLock(registry(folder) / "up.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        say("another `latentlab stack up` is starting this stack; waiting for it")
        lock.acquire(timeout=600)
    try:
        return _up(cfg, services, say)
    finally:
        lock.release()


def _up(cfg: Config | None, services: list[str], say) -> Config:
    if cfg is None:
        saved = load()
        cfg = saved if saved is not None and any(running(saved, s) for s in SERVICES) else from_env()
    if not (cfg.dir / "stack.json").exists() and any(running(cfg, s) for s in SERVICES):
        raise LatentlabError(f"the stack's folder {cfg.dir} was deleted while it runs; stop it first "
                             "(latentlab stack down), then start it afresh")
    todo = [s for s in services if not running(cfg, s)]
    for service in todo:
        supervisor.check_ports(cfg, BY_NAME[service])
    cfg.save()
    for service in services:
        if service in todo:
            start = time.perf_counter()
            supervisor.start(cfg, BY_NAME[service])
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
        supervisor.stop(cfg, BY_NAME[service], kill=kill)
        say(f"{service}: stopped")
    if not (cfg.dir / "stack.json").exists() and not any(running(cfg, s) for s in SERVICES):
        import shutil

        shutil.rmtree(registry(cfg.dir), ignore_errors=True)  # nothing left of that stack to find


def status(cfg: Config | None = None) -> list[str]:
    """One line per service; a folder with no stack is one line too, not an error."""
    cfg = cfg or load()
    if cfg is None:
        return [f"no stack in {default_dir()} (start one: latentlab stack up)"]
    gone = "" if (cfg.dir / "stack.json").exists() else f"; its folder {cfg.dir} was deleted: latentlab stack down stops it"
    return [f"{s}: {'running' if running(cfg, s) else 'stopped'} ({describe(cfg, s)}{gone})" for s in SERVICES]


def env_lines(cfg: Config | None = None) -> list[str]:
    """Shell lines for `eval`: what a shell needs to log to this stack. Without `cfg`, the saved stack's."""
    cfg = cfg or require()
    return [f"export MLFLOW_TRACKING_URI={cfg.tracking_uri} MLFLOW_TRACKING_USERNAME={cfg.mlflow_user} "
            f"MLFLOW_TRACKING_PASSWORD={cfg.mlflow_password}"]
