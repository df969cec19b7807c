"""A clone's DVC remote pointed at the stack (or at another team server), in `.dvc/config.local`.

The local config is never committed: the remote's address and keys belong to one machine, and a
clone without them computes everything itself instead of failing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from latentlab.runtime.errors import LatentlabError

from .config import require
from .lifecycle import env_lines

REMOTE = "team"


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
    local = dvc_dir / "config.local"
    if not local.exists():  # created private, so the keys are never readable by others, even briefly
        os.close(os.open(local, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(local, 0o600)
    with DvcConfig(dvc_dir=str(dvc_dir)).edit("local") as conf:
        conf["remote"][name] = remote
        conf["core"]["remote"] = name
    os.chmod(local, 0o600)  # DVC rewrites the file with its own mode


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def connect_clone(repo: Path, url: str | None = None, endpoint: str | None = None,
                  tracking_uri: str | None = None, note=_to_stderr) -> list[str]:
    """Point `repo`'s remote `team` at the stack, or at `url` (with `endpoint`: an S3 server not AWS).

    Returns the shell lines for `eval` (the MLflow export: the stack's, or `tracking_uri` with `url`);
    `note` gets the line for the person, on stderr by default so `eval` never runs it. With `url`,
    credentials come from AWS_* variables or `dvc remote modify --local`; without it, the stack's own
    keys are written and `endpoint` and `tracking_uri` are not used.
    """
    if url:
        connect(repo, url, endpoint)
        note(f"DVC remote '{REMOTE}' -> {url} in .dvc/config.local")
        return [f"export MLFLOW_TRACKING_URI={tracking_uri}"] if tracking_uri else []
    cfg = require()
    connect(repo, f"s3://{cfg.bucket}/dvc", cfg.s3_endpoint, cfg.access_key, cfg.secret_key)
    note(f"DVC remote '{REMOTE}' -> s3://{cfg.bucket}/dvc at {cfg.s3_endpoint} in .dvc/config.local")
    return env_lines(cfg)
