"""The wrapper every stage script runs in: params checked first, one-line errors, one summary line.

Before any work it also pins the numeric libraries (`reproducible`), finds this stage's DVC name and
outputs in `dvc.yaml`, and checks that every output folder takes files. SIGTERM ends a stage the way
Ctrl-C does, so its MLflow run is closed as FAILED instead of staying RUNNING.
"""

from __future__ import annotations

import atexit
import os
import re
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
    """The DVC name of the running stage (`train_ae_mnist_wide@wide`): MLflow runs are named after it."""
    return _current.get("name") or _fallback_name()


def _fallback_name() -> str:
    stem = Path(sys.argv[0]).stem
    return f"{stem}@{sys.argv[1]}" if len(sys.argv) > 1 else stem


def _expand(value, item, key):
    """`${item}`, `${item.field}` and `${key}` of a foreach entry, as DVC substitutes them."""
    if isinstance(value, dict):
        return {_expand(k, item, key): _expand(v, item, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, item, key) for v in value]
    if not isinstance(value, str):
        return value

    def sub(match):
        ref = match.group(1)
        if ref == "key":
            return str(key)
        found = item
        for part in ref.split(".")[1:]:
            found = found[part]
        return str(found)

    return re.sub(r"\$\{(key|item(?:\.[\w-]+)*)\}", sub, value)


def stages_of(dvc_yaml: Path) -> dict[str, dict]:
    """Every stage of a dvc.yaml by its full name (`train_classifier@lenet`), foreach groups expanded."""
    import yaml

    try:
        doc = yaml.safe_load(dvc_yaml.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    found = {}
    for group, spec in (doc.get("stages") or {}).items():
        items = spec.get("foreach")
        if isinstance(items, str):  # `${vae.sweep_kl_weights}`: a list from params.yaml, as DVC reads it
            items = _param(dvc_yaml.parent / "params.yaml", items.strip()[2:-1])
        if isinstance(items, (list, dict)):
            entries = items.items() if isinstance(items, dict) else ((v, v) for v in items)
            for key, item in entries:
                found[f"{group}@{key}"] = _expand(spec["do"], item, key)
        elif "cmd" in spec:
            found[group] = spec
    return found


def _param(path: Path, dotted: str):
    from ruamel.yaml import YAMLError

    from latentlab.runtime.params import lookup, read_yaml

    try:
        return lookup(read_yaml(path), dotted.split("."))
    except (OSError, YAMLError):
        return None


def _outs(spec: dict) -> list[str]:
    paths = []
    for section in ("outs", "metrics", "plots"):
        for entry in spec.get(section) or []:
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return [str(p) for p in paths]


def outputs_by_stage(dvc_yaml: Path) -> dict[str, list[str]]:
    """Each stage's outputs (outs, metrics, plots) by its full DVC name."""
    return {name: _outs(spec) for name, spec in stages_of(dvc_yaml).items()}


def locate(argv: list[str], root: Path) -> tuple[str, list[str]]:
    """(DVC name, outputs) of the stage whose command is this process's `python stages/<script> args`."""
    script = Path(argv[0]).name
    for full_name, spec in stages_of(root / "dvc.yaml").items():
        cmd = shlex.split(str(spec.get("cmd", "")))
        if len(cmd) >= 2 and Path(cmd[1]).name == script and cmd[2:] == argv[1:]:
            return full_name, _outs(spec)
    return _fallback_name(), []


def run(stage_family: str, main: Callable[[dict], str]) -> None:
    """Load and validate params.yaml, call `main(params)`, print its summary and the seconds taken.

    A `LatentlabError` becomes `latentlab <stage>: error: <message>` on stderr and exit status 2,
    with no traceback: those are problems the user fixes, not bugs to debug.
    """
    reproducible.ensure()
    start = time.perf_counter()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGALRM, _on_sigterm)
    try:
        _current["name"], outs = locate(sys.argv, repo_root())
        params = params_mod.load()
        io.check_writable(Path(o) / "_" if Path(o).is_dir() else Path(o) for o in outs)  # a folder out: itself
        summary = main(params)
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
