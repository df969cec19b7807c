"""Atomic, byte-stable file output.

Every writer goes through `atomic_path`: write to a temporary name in the same folder, then
`os.replace`, which is atomic on POSIX filesystems, so a killed stage leaves the old file or none,
never half of one. Inside `staging()` (every stage runs in one) the renames wait until the stage
has finished: a stage that fails or is killed half-way leaves none of its outputs under a final name,
and DVC never sees a mix of this run's files and the last one's. Until then `readable(path)` is
where a staged file can be read back. A failed write (disk full, read-only folder) becomes one `LatentlabError` line.
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
_staged: dict[Path, Path] | None = None  # final name -> temporary file, while a stage runs


@contextlib.contextmanager
def staging() -> Iterator[None]:
    """Hold every rename of the block until `commit_staged()`; on any exception discard the files."""
    global _staged
    _staged = {}
    try:
        yield
    except BaseException:
        discard_staged()
        raise


def commit_staged() -> None:
    """Give every staged file its final name: the last step of a stage that nothing can fail after."""
    global _staged
    staged, _staged = _staged or {}, None
    for final, tmp in staged.items():
        os.replace(tmp, final)


def discard_staged() -> None:
    global _staged
    staged, _staged = _staged or {}, None
    for tmp in staged.values():
        tmp.unlink(missing_ok=True)


def readable(path: str | os.PathLike) -> Path:
    """Where `path`'s content is now: its staged temporary file while the stage runs, else itself."""
    path = Path(path)
    return (_staged or {}).get(path, path)


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
        if _staged is None:
            os.replace(tmp, path)
        else:
            if path in _staged:
                _staged.pop(path).unlink(missing_ok=True)
            _staged[path] = tmp
            tmp = None
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


REBUILD = "`dvc repro` rebuilds it"


def _unreadable(path, exc: BaseException, fix: str) -> LatentlabError:
    """One line for a model or array file that cannot be used: missing, truncated, not ours, a pickle."""
    if isinstance(exc, FileNotFoundError):
        why = "missing"
    else:
        why = f"unreadable ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]})"
    return LatentlabError(f"{path}: {why}; {fix}")


def load_npz(path: str | os.PathLike, fix: str = REBUILD) -> dict[str, np.ndarray]:
    try:
        with np.load(readable(path), allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as exc:  # whatever the bytes are, the answer is the same: this file cannot be used
        raise _unreadable(path, exc, fix) from None


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """Serialised in memory first: `torch.save` to a file name records that (temporary) name in the
    archive, so two saves of the same weights would differ; to a buffer it always records `archive`."""
    import io as _io

    import torch

    buffer = _io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_torch(path: str | os.PathLike, map_location: Any = "cpu", fix: str = REBUILD) -> Any:
    """Tensors only (`weights_only`): a file with any other pickled object is refused, never run."""
    import torch

    try:
        return torch.load(readable(path), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise _unreadable(path, exc, fix) from None


def load_weights(model, path: str | os.PathLike):
    """`model` with the weights of `path`, or one line when they belong to another network."""
    return apply_weights(model, load_torch(path), path)


def apply_weights(model, state: Any, source: str | os.PathLike):
    """`model.load_state_dict(state)`, or one line naming `source` when the weights belong to another network."""
    try:
        model.load_state_dict(state)
    except Exception as exc:  # missing or unexpected keys, other shapes, not a state dict at all
        first = (str(exc).strip().splitlines() or [""])[0]
        raise LatentlabError(f"{source}: holds weights of another network ({first[:160]}); {REBUILD}") from None
    return model


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
