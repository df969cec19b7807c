"""`latentlab repro`: the pipeline's independent stages at once, each in a `dvc repro --single-item` of its own.

Why this mechanism: DVC runs a stage's command with its repository lock released and holds only
read/write locks on that stage's deps and outs, so several single-stage `dvc repro` processes run side
by side and each records its stage in `dvc.lock` exactly as one serial `dvc repro` would (the test
compares the two files byte for byte). DVC stays the one thing that decides what is stale, hashes and
caches. `make -j` over `dvc dag` would need a generated Makefile that duplicates `dvc.yaml`, and DVC's
queue runs whole experiments in copies of the workspace, not stages of one.

A stage's thread count is its own param (`threads`), so the bytes do not depend on how many run at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from latentlab.runtime.errors import LatentlabError

LOGS = Path(".dvc/tmp/latentlab-repro")
TYPICAL = Path("stage-seconds.json")  # committed: each stage's time in the committed run, for a first run's order


@dataclass
class Plan:
    """The stages to run, in DVC's order, each with the stages of the plan it waits for."""

    order: list[str]
    waits_for: dict[str, set[str]] = field(default_factory=dict)
    serial: list[str] = field(default_factory=list)  # the order one `dvc repro` would run them in


def plan(root: Path, targets: list[str], force: bool) -> Plan:
    """What `dvc repro <targets>` would run: every stale stage (or, forced, every stage) with what follows it."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.repo.reproduce import plan_repro

    try:
        with Repo(str(root)) as repo:
            graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
            chosen = [s for t in targets for s in repo.stage.collect(t)] if targets else list(graph.nodes)
            wanted = set(chosen).union(*(nx.descendants(graph, s) for s in chosen))
            changed = set() if force else set(repo.status())
            serial = [s.addressing for s in plan_repro(graph, chosen if targets else None)]
    except DvcException as exc:
        raise LatentlabError(f"dvc.yaml: {exc}; fix the pipeline file or the target name") from None
    stale = wanted if force else {s for s in wanted if s.addressing in changed}
    runs = {s for s in wanted if s in stale or any(a in stale for a in nx.descendants(graph, s))}
    # Among stages ready together, the one heading the longest chain still to run goes first, so the
    # long chains start early and the other workers fill in around them. A stage weighs the seconds its
    # last run took here (its log); in a clone where it never ran, its time in the committed run
    # (stage-seconds.json), or 1 for a stage new to both.
    seconds = {**typical_times(root / TYPICAL), **last_times()}
    rank: dict = {}
    for stage in nx.topological_sort(graph):  # dependants first
        after = [rank[d] for d in graph.predecessors(stage) if d in runs]
        rank[stage] = seconds.get(stage.addressing, 1.0) + max(after, default=0.0)
    position = {s: i for i, s in enumerate(graph.nodes)}  # dvc.yaml's order
    order = sorted(runs, key=lambda s: (-rank[s], position[s]))
    return Plan(order=[s.addressing for s in order],
                waits_for={s.addressing: {d.addressing for d in nx.descendants(graph, s) if d in runs} for s in order},
                serial=serial)


def typical_times(path: Path) -> dict[str, float]:
    """{stage: seconds} from the committed stage-seconds.json; nothing when it is absent or unreadable
    (it only orders the stages, never decides what runs)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def last_times(folder: Path = LOGS) -> dict[str, float]:
    """Seconds each stage took when it last ran here, from the summary line ending its log."""
    import re

    line = re.compile(r"^latentlab [\w@.-]+: .* \[(?P<seconds>[\d.]+) s\]$")
    times = {}
    for log in folder.glob("*.log") if folder.is_dir() else []:
        found = [m for m in map(line.match, log.read_text(errors="replace").splitlines()) if m]
        if found:
            times[log.stem] = float(found[-1]["seconds"])
    return times


def default_jobs(threads: int) -> int:
    """As many stages as there are cores for their threads, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


class _Running:
    def __init__(self, stage: str, force: bool):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.stage, self.log = stage, LOGS / f"{stage.replace('/', '_')}.log"
        self.start = time.monotonic()
        dvc = Path(sys.executable).parent / "dvc"  # the one beside this Python, on PATH or not
        cmd = [str(dvc) if dvc.exists() else "dvc", "--wait-for-lock", "repro", "--single-item", *(["--force"] if force else []), stage]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def summary(self) -> str:
        """The stage's own summary line (`latentlab <stage>: ... [s]`), or DVC's word that it was up to date."""
        lines = self.lines()
        mine = [l for l in lines if l.startswith("latentlab ") and ": error:" not in l]
        skipped = any("didn't change, skipping" in l for l in lines)
        return mine[-1] if mine else f"{self.stage}: {'up to date' if skipped else 'ran'} [{time.monotonic() - self.start:.1f} s]"

    def error(self) -> str:
        """The stage's own one-line error when it gave one, else DVC's."""
        lines = [l.strip() for l in self.lines() if l.strip()]
        mine = [l for l in lines if l.startswith("latentlab ") and (": error:" in l or "terminated" in l)]
        dvc = [l for l in lines if l.startswith("ERROR")]
        return (mine or dvc or lines or ["no output"])[-1]


def run(p: Plan, jobs: int, force: bool = False, out=sys.stdout) -> int:
    """Start each stage once what it waits for has finished, `jobs` at a time; 0, or 1 after a failure.

    After a failure no new stage starts and the running ones finish; SIGINT or SIGTERM ends them all
    (each stage ends with its `dvc repro`, and leaves no output, see `runtime.stage`).
    """
    if not p.order:
        print("latentlab repro: every stage is up to date", file=out)
        return 0
    total, done, failed = len(p.order), [], []
    pending, running = list(p.order), []
    width = len(str(total))
    _say(out, f"latentlab repro: {total} stages, {jobs} at a time; each stage's output in {LOGS}/")
    stop = _forward_signals(lambda: running)
    before = _lock_order()
    try:
        while pending or running:
            while not failed and not stop and len(running) < jobs:
                ready = next((s for s in pending if p.waits_for[s] <= set(done)), None)
                if ready is None:
                    break
                pending.remove(ready)
                running.append(_Running(ready, force))
                _say(out, f"[{len(done):>{width}}/{total}] running: " + ", ".join(r.stage for r in running), live=True)
            if not running:
                break
            time.sleep(0.2)
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                if r.proc.returncode == 0:
                    done.append(r.stage)
                    _say(out, f"[{len(done):>{width}}/{total}] {r.summary()}")
                elif stop:
                    _say(out, f"latentlab repro: {r.stage} stopped: {r.error()}")
                else:
                    failed.append(r)
                    _say(out, f"latentlab repro: {r.stage} failed: {r.error()} (log: {r.log})")
    finally:
        _keep_lock_order(before, p.serial)
    if stop:
        print(f"latentlab repro: stopped by {stop[0]}; {len(done)} of {total} stages finished", file=out)
        return 128 + stop[1]
    if failed:
        print(f"latentlab repro: error: {', '.join(r.stage for r in failed)} failed; "
              f"{len(done)} of {total} stages finished, {len(pending)} not started; "
              "fix the error above and run it again", file=out)
        return 1
    return 0


def _lock_order() -> list[str]:
    import yaml

    try:
        return list((yaml.safe_load(Path("dvc.lock").read_text()) or {}).get("stages") or {})
    except (OSError, yaml.YAMLError):
        return []


def _keep_lock_order(before: list[str], serial: list[str]) -> None:
    """dvc.lock as one serial `dvc repro` leaves it: entries that were there keep their place, new ones
    follow in the order a serial run adds them (stages that end in another order append theirs in
    another order); the entries themselves are DVC's."""
    from dvc.utils.serialize import modify_yaml

    if not Path("dvc.lock").exists():
        return
    with modify_yaml("dvc.lock") as data:
        stages = data.get("stages") or {}
        order = [k for k in before if k in stages] + [k for k in serial if k in stages and k not in before]
        order += [k for k in stages if k not in order]
        if order != list(stages):
            data["stages"] = {k: stages[k] for k in order}


def _say(out, line: str, live: bool = False) -> None:
    """A line for good, or (`live`) what is running now: on a terminal one line rewritten in place,
    in a log one line each."""
    tty = getattr(out, "isatty", lambda: False)()
    if tty and live:
        print(f"\r\033[K{line[:os.get_terminal_size(out.fileno()).columns - 1]}", end="", file=out, flush=True)
    else:
        print(f"\r\033[K{line}" if tty else line, file=out, flush=True)


def _forward_signals(running) -> list:
    """On SIGINT or SIGTERM, end every running stage's DVC process; the list gets (name, number)."""
    stop: list = []

    def handler(signum, frame):
        """The stages first: each ends as SIGTERM ends it, then its `dvc repro` reports it and exits."""
        import psutil

        if not stop:
            stop.extend([signal.Signals(signum).name, signum])
        for r in running():
            try:
                targets = psutil.Process(r.proc.pid).children(recursive=True) or [psutil.Process(r.proc.pid)]
            except psutil.Error:
                continue
            for proc in targets:
                try:
                    proc.send_signal(signal.SIGTERM)
                except psutil.Error:
                    pass

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop
