"""`latentlab pull`: what a DVC remote already holds is fetched, not recomputed, when one is reachable.

Any default DVC remote counts (the team stack's or another server's). Without a reachable one the
pipeline simply computes everything here, so this step says why in one line and never fails.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from latentlab.runtime.errors import LatentlabError


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
    """`dvc pull` when a default remote is configured and reachable; one line otherwise.

    What it checks out must be what `dvc.lock` records: a download DVC refuses (a damaged object) or
    an output that differs after it (an altered folder listing) stops here with one line, before any
    stage could run on it. A remote that is not there is not an error: everything is computed here."""
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
    result = subprocess.run([sys.executable, "-m", "dvc", "pull", "--allow-missing"], check=False, cwd=repo,
                            stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise LatentlabError(f"dvc pull from '{name}' failed: {_pull_problem(result.stderr)}; nothing was run. "
                             "`latentlab store check` names damaged objects in the store (--repair, from a clone "
                             "with good copies, re-uploads them)")
    from latentlab.cli.store import check_workspace

    check_workspace(repo)
    return 0


def _pull_problem(stderr: str) -> str:
    """DVC's reason in one phrase: the targets it could not check out, else its last error line."""
    lines = [l.strip() for l in stderr.splitlines() if l.strip()]
    if any("Checkout failed for following targets" in l for l in lines):
        at = next(i for i, l in enumerate(lines) if "Checkout failed for following targets" in l)
        targets = [l for l in lines[at + 1:] if not l.startswith(("Is your cache", "ERROR", "WARNING"))]
        return "these outputs did not match their hashes: " + ", ".join(targets[:10])
    errors = [l for l in lines if l.startswith("ERROR")]
    return (errors or lines or ["no message"])[-1].removeprefix("ERROR: ")
