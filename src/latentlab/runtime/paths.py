"""Where things live, resolved once so stages, tests and queued experiments agree."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout this code runs in: the nearest folder above the cwd holding `dvc.yaml`.

    Queued DVC experiments run in a temporary copy under `.dvc/tmp/exps/`; that copy has its own
    `dvc.yaml`, so inputs and outputs resolve inside the copy, as DVC expects.
    """
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def project_root() -> Path:
    """The real repository, also from inside a queued experiment's temporary copy.

    DVC sets `DVC_ROOT` for stage commands; state that must outlive the copy (the MLflow store)
    lives here.
    """
    return Path(os.environ.get("DVC_ROOT") or repo_root())
