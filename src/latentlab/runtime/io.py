"""Atomic, byte-stable file output.

Every writer goes through `atomic_path`: write to a temporary name in the same folder, then
`os.replace`, which is atomic on POSIX filesystems, so a killed stage leaves the old file or none,
never half of one. A failed write (disk full, read-only folder) becomes one `LatentlabError` line.
Writers put nothing of the moment into the bytes (no temporary names, no timestamps), so the same
content always gives the same file and DVC sees nothing changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from latentlab.runtime.errors import LatentlabError


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it becomes `path`, on failure it vanishes."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should look like any other file
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write as RuntimeError from its zip writer
        if isinstance(exc, RuntimeError) and "write" not in str(exc) and "unexpected pos" not in str(exc):
            raise
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise LatentlabError(f"{path}: cannot be written ({why}); free disk space or make "
                             f"{path.parent} writable, then re-run the stage") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def check_writable(paths) -> None:
    """Fail before any work when an output folder cannot take files, not after an hour of training.

    Creating a file is the only honest test: permission bits say nothing to root, and read-only
    mounts or full disks only show when writing. A folder that does not exist yet is tested where it
    would be created, and is not created here.
    """
    for folder in sorted({Path(p).parent for p in paths}):
        existing = next(f for f in (folder, *folder.parents) if f.exists() or f == Path(f.anchor or "."))
        try:
            if not existing.is_dir():
                raise NotADirectoryError(20, f"{existing} is a file")
            with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-check.", suffix=".tmp") as fh:
                fh.write(b"x")
                fh.flush()
        except OSError as exc:
            raise LatentlabError(f"output folder {folder} is not writable ({exc.strerror or exc}); fix its "
                                 "permissions or free disk space, then re-run the stage") from None


def save_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Uncompressed: the prepared arrays are read far more often than written."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """Serialised in memory first: `torch.save` to a file name records that (temporary) name in the
    archive, so two saves of the same weights would differ; to a buffer it always records `archive`."""
    import io as _io

    import torch

    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


def save_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame (DVC plots read CSV with a header row)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_figure(path: str | os.PathLike, fig, dpi: int = 110) -> None:
    """Save a matplotlib figure and close it, so long stages do not pile figures up in memory."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
