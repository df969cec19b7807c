"""The wrapper every stage script runs in: params checked first, one-line errors, one summary line."""

from __future__ import annotations

import sys
import time
from typing import Callable

from . import params as params_mod
from .errors import LatentlabError


def run(name: str, main: Callable[[dict], str]) -> None:
    """Load and validate params.yaml, call `main(params)`, print its summary and the seconds taken.

    A `LatentlabError` becomes `latentlab <stage>: error: <message>` on stderr and exit status 2,
    with no traceback: those are problems the user fixes, not bugs to debug.
    """
    start = time.perf_counter()
    try:
        params = params_mod.load()
        summary = main(params)
    except LatentlabError as exc:
        print(f"latentlab {name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"latentlab {name}: interrupted; no output was half-written", file=sys.stderr)
        sys.exit(130)
    print(f"latentlab {name}: {summary} [{time.perf_counter() - start:.1f} s]")
