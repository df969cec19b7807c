"""Is a process, or a server, still there? Asked the same way by run tracking and the team stack."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request


def started_at(pid: int) -> float | None:
    """When a live process started; None when it is gone (or a zombie nobody reaped).

    A pid with its start time names one process: pids are reused, start times are not."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def http_problem(url: str, timeout: float = 2.0, ok_only: bool = False) -> str | None:
    """None when `url` answers (with a 2xx status when `ok_only`), else why it did not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}" if ok_only else None  # the server answered, with an error status
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
