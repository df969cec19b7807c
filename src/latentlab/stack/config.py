"""The stack's settings: read from the environment once, then kept in `stack.json` beside its data.

The credentials are generated at the first start and kept: PostgreSQL's data and the object store's
identities were made with them, so a later start with other ones could not read either.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from latentlab.runtime.errors import LatentlabError
from latentlab.runtime.paths import repo_root

# The block of consecutive ports from LATENTLAB_STACK_PORT, in this order (documented, so never reordered).
PORT_NAMES = ("mlflow", "s3", "db", "master", "volume", "filer", "s3.grpc", "master.grpc", "volume.grpc",
              "filer.grpc")
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass
class Config:
    dir: Path
    host: str = "127.0.0.1"
    port: int = 15000
    bucket: str = "latentlab"
    access_key: str = field(default_factory=lambda: "latentlab-" + secrets.token_hex(6))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    db_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    mlflow_user: str = "latentlab"  # the team's MLflow login (MLflow's basic-auth app, its admin)
    mlflow_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    mlflow_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # its CSRF signing key
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
        """stack.json in the stack's folder, and a copy where deleting that folder does not lose it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        write_private(self.dir / "stack.json", json.dumps(doc, indent=1) + "\n")
        write_private(registry(self.dir) / "stack.json", json.dumps(doc, indent=1) + "\n")


def registry(folder: Path) -> Path:
    """Where a stack's pid files and a copy of its settings live: outside its folder, so a stack whose
    folder was deleted while it ran can still be found and stopped. Private to this user."""
    import hashlib
    import tempfile

    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / f"latentlab-stacks-{os.getuid()}"
    here = base / hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    for path in (base, here):
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    return here


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: created with mode 600, so no other user sees it even briefly."""
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
    saved = folder / "stack.json"
    if not saved.exists():  # the folder was deleted, perhaps while the stack ran: its copy says where
        saved = registry(folder) / "stack.json"
    try:
        doc = json.loads(saved.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LatentlabError(f"{saved} cannot be read ({exc}); remove it to start afresh") from None
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
        cfg.mlflow_user, cfg.mlflow_password, cfg.mlflow_secret = old.mlflow_user, old.mlflow_password, old.mlflow_secret
    if not 1024 <= cfg.port <= 65535 - len(PORT_NAMES):
        raise LatentlabError(f"LATENTLAB_STACK_PORT={cfg.port}: choose a port from 1024 to {65535 - len(PORT_NAMES)}")
    return cfg


def require() -> Config:
    """The saved settings of a started stack; commands that only read them fail in one line without one."""
    cfg = load()
    if cfg is None:
        raise LatentlabError(f"no stack in {default_dir()}: start one (make stack-up), or set LATENTLAB_STACK_DIR")
    return cfg
