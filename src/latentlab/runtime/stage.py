"""The wrapper every stage script runs in: params checked first, one-line errors, one summary line.

Before any work it also pins the numeric libraries (`reproducible`), finds this stage's DVC name and
output folders in `dvc.yaml`, and checks that every output folder takes files. Every output is staged
under a temporary name and renamed only once the stage has finished (`io.staging`), so a stage that
fails or is killed leaves none under a final name. SIGTERM ends a stage the way Ctrl-C does, so its
MLflow run is closed as FAILED instead of staying RUNNING.
"""

from __future__ import annotations

import atexit
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Callable, NoReturn

from latentlab.runtime import io, reproducible
from latentlab.runtime import params as params_mod
from latentlab.runtime.errors import LatentlabError
from latentlab.runtime.paths import repo_root

_current: dict = {}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the stage happens to be, so `with` blocks close what they opened."""


def _on_sigterm(signum, frame):
    """Raise `Terminated` where the stage is; inside a finaliser (`__del__`), where Python would print and
    ignore it and the stage would go on, try again 0.1 s later (SIGALRM comes back here)."""
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            return
        frame = frame.f_back
    raise Terminated()


def name() -> str:
    """The DVC name of the running stage (`train_ae_mnist@wide`): MLflow runs are named after it."""
    return _current.get("name") or _fallback_name()


def _fallback_name() -> str:
    stem = Path(sys.argv[0]).stem
    return f"{stem}@{sys.argv[1]}" if len(sys.argv) > 1 else stem


def _outs(spec: dict) -> list[str]:
    paths = []
    for section in ("outs", "metrics", "plots"):
        for entry in spec.get(section) or []:
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return [str(p) for p in paths]


def locate(argv: list[str], root: Path) -> tuple[str, list[str]]:
    """(DVC name, outputs) of the stage whose command is this process's `python stages/<script> args`.

    A `foreach` group's stages are `<group>@<key>`, and their commands take the key (`${key}`, or
    `${item}` of a list) as their one argument: the argument is all that varies in names and outputs.
    """
    import yaml

    try:
        groups = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        groups = {}
    script = Path(argv[0]).name
    for group, spec in groups.items():
        body = spec.get("do", spec)
        cmd = shlex.split(str(body.get("cmd", "")))
        if len(cmd) >= 2 and Path(cmd[1]).name == script and ("foreach" in spec) == (len(argv) > 1):
            if len(argv) == 1:
                return group, _outs(body)
            outs = [out.replace("${key}", argv[1]).replace("${item}", argv[1]) for out in _outs(body)]
            return f"{group}@{argv[1]}", outs
    return _fallback_name(), []


def _end_with(ancestor) -> None:
    """SIGTERM this process once `ancestor` (the `dvc repro` that started it) is gone: DVC, killed, does
    not stop its stage, which would otherwise train to the end and write outputs nothing records."""
    import threading

    import psutil

    def alive() -> bool:  # a killed DVC whose own parent has not reaped it yet is a zombie: gone too
        try:
            return ancestor.is_running() and ancestor.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def watch():
        while alive():
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="latentlab-parent-watch", daemon=True).start()


def _dvc_ancestor():
    """The nearest ancestor process that is DVC (`dvc repro`, `dvc exp run`), or None outside DVC."""
    import psutil

    try:
        for proc in psutil.Process().parents():
            if any(Path(part).name == "dvc" or part.endswith("/dvc") for part in proc.cmdline()[:2]):
                return proc
    except (psutil.Error, OSError):
        pass
    return None


def run(stage_family: str, main: Callable[[dict], str]) -> None:
    """Load and validate params.yaml, call `main(params)`, print its summary and the seconds taken.

    A `LatentlabError` becomes `latentlab <stage>: error: <message>` on stderr and exit status 2,
    with no traceback: those are problems the user fixes, not bugs to debug.
    """
    reproducible.ensure()
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGALRM, _on_sigterm)
    if (ancestor := _dvc_ancestor()) is not None:
        _end_with(ancestor)
    try:
        _current["name"], outs = locate(sys.argv, repo_root())
        params = params_mod.load()
        reproducible.limit_threads(params["threads"])
        io.check_writable(Path(o) / "_" if Path(o).is_dir() else Path(o) for o in outs)  # a folder out: itself
        with io.staging():
            summary = main(params)
            params_mod.check_unchanged()
        io.commit_staged()
    except LatentlabError as exc:
        print(f"latentlab {stage_family}: error: {exc}", file=sys.stderr)
        _exit(2)
    except Terminated:
        print(f"latentlab {stage_family}: terminated (SIGTERM); no output was half-written", file=sys.stderr)
        _exit(143)
    except KeyboardInterrupt:
        print(f"latentlab {stage_family}: interrupted; no output was half-written", file=sys.stderr)
        _exit(130)
    print(f"latentlab {stage_family}: {summary} [{time.perf_counter() - start:.1f} s]")
    _exit(0)


def _exit(status: int) -> NoReturn:
    """End the stage's process without the interpreter's teardown of its modules.

    With torch and MLflow loaded that teardown took 1.2-1.8 s of every stage, after all its work:
    every output is written and renamed into place and its MLflow run is closed by then. The exit
    handlers still run (logging's flush among them), then the standard streams are flushed."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
