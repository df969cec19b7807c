"""`latentlab repro` runs independent stages at once and writes what a serial `dvc repro` writes.

A small real DVC pipeline in a temporary folder: one stage, three independent ones after it, one that
reads all three; each is a latentlab stage (`runtime.stage.run`) doing torch work with the `threads`
of params.yaml. The same pipeline is run serially by DVC, and by `latentlab repro` with one and with
two workers; then a stage fails, and then the whole run is stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

STAGE = '''from latentlab.runtime import reproducible
reproducible.pin_environment()
import json, os, sys, time  # noqa: E402
from pathlib import Path  # noqa: E402
import torch  # noqa: E402
from latentlab.runtime import io, stage  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402


def main(params):
    name = sys.argv[1] if len(sys.argv) > 1 else Path(sys.argv[0]).stem
    if os.environ.get("FAIL_STAGE") == name:
        raise LatentlabError(f"{name} was told to fail")
    if os.environ.get("SLOW_STAGE") == name:
        Path("started-" + name).touch()
        time.sleep(float(os.environ.get("SLOW_SECONDS", "120")))
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(len(name)))
    for _ in range(30):
        a = torch.tanh(a @ a.T / 16)
    deps = {"first": [], "last": ["a", "b", "c"]}.get(name, ["first"])  # what dvc.yaml says it reads
    inputs = [json.loads(Path(f"out/{d}.json").read_text())["sum"] for d in deps]
    io.save_json(f"out/{name}.json", {"sum": float(a.double().sum()), "threads": torch.get_num_threads(),
                                      "inputs": inputs})
    return f"out/{name}.json"


stage.run(Path(sys.argv[0]).stem, main)
'''

DVC_YAML = '''stages:
  first:
    cmd: python stages/first.py
    deps: [stages/first.py]
    params: [threads]
    outs: [out/first.json]
  work:
    foreach: [a, b, c]
    do:
      cmd: python stages/work.py ${item}
      deps: [stages/work.py, out/first.json]
      params: [threads]
      outs:
        - out/${item}.json
  last:
    cmd: python stages/last.py
    deps: [stages/last.py, out/a.json, out/b.json, out/c.json]
    params: [threads]
    outs: [out/last.json]
'''


def _project(folder: Path) -> Path:
    folder.mkdir()
    (folder / "stages").mkdir()
    (folder / "out").mkdir()
    for name in ("first", "work", "last"):
        (folder / "stages" / f"{name}.py").write_text(STAGE)
    (folder / "dvc.yaml").write_text(DVC_YAML)
    shutil.copy(REPO / "params.yaml", folder / "params.yaml")
    subprocess.run([BIN / "dvc", "init", "--no-scm", "-q"], cwd=folder, check=True)
    return folder


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "OMP_NUM_THREADS"))}
    return {**env, "PATH": f"{BIN}:{env.get('PATH', '')}", **extra}


def _run(folder: Path, *cmd: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=False, cwd=folder, env=_env(**extra), capture_output=True, text=True, timeout=600)


def _processes_in(folder: Path) -> list[list[str]]:
    """The command lines of every process working in `folder`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.cwd() == str(folder):
                found.append(proc.cmdline())
        except psutil.Error:
            pass
    return found


def _terminate_once_b_runs(folder: Path, proc: subprocess.Popen) -> None:
    """SIGTERM `proc` as soon as stage b (SLOW_STAGE=b) is inside its work."""
    deadline = time.monotonic() + 120
    while not (folder / "started-b").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "stage b never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "out").iterdir())}


@pytest.mark.slow
def test_serial_and_parallel_runs_write_the_same_bytes(tmp_path):
    runs = {"dvc repro": ("dvc", "repro"), "1 worker": ("latentlab", "repro", "-j", "1"),
            "2 workers": ("latentlab", "repro", "-j", "2")}
    locks, outs = {}, {}
    for label, cmd in runs.items():
        folder = _project(tmp_path / label.replace(" ", "_"))
        done = _run(folder, *cmd)
        assert done.returncode == 0, done.stdout + done.stderr
        locks[label], outs[label] = (folder / "dvc.lock").read_bytes(), _outputs(folder)
        if label == "2 workers":
            lines = done.stdout.splitlines()
            assert sum("] latentlab " in line for line in lines) == 5, done.stdout  # one summary line per stage
            assert any("running: " in line and line.count(", ") >= 1 for line in lines), done.stdout  # two at once
            assert json.loads((folder / "out" / "a.json").read_text())["threads"] == 1  # params', not the workers'
            again = _run(folder, "latentlab", "repro")
            assert again.returncode == 0 and "every stage is up to date" in again.stdout
            assert "up to date" in _run(folder, "dvc", "status").stdout
    assert locks["1 worker"] == locks["dvc repro"] == locks["2 workers"]
    assert outs["1 worker"] == outs["dvc repro"] == outs["2 workers"]


@pytest.mark.slow
def test_a_failed_stage_is_one_line_and_the_others_finish(tmp_path):
    folder = _project(tmp_path / "p")
    done = _run(folder, "latentlab", "repro", "-j", "3", FAIL_STAGE="b")  # a, b and c start together
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if "error" in line]
    assert errors[0].startswith("latentlab repro: work@b failed: latentlab work: error: b was told to fail"), done.stdout
    assert errors[-1].startswith("latentlab repro: error: work@b failed; 3 of 5 stages finished, 1 not started")
    assert "Traceback" not in done.stdout + done.stderr
    assert sorted(_outputs(folder)) == ["a.json", "c.json", "first.json"]  # nothing of b, nothing after it
    assert "work@b" in _run(folder, "dvc", "status").stdout
    assert _run(folder, "latentlab", "repro").returncode == 0  # fixed, it completes from there
    assert sorted(_outputs(folder)) == ["a.json", "b.json", "c.json", "first.json", "last.json"]


@pytest.mark.slow
def test_sigterm_ends_the_running_stages_and_leaves_no_orphan(tmp_path):
    folder = _project(tmp_path / "p")
    proc = subprocess.Popen([BIN / "latentlab", "repro", "-j", "2"], cwd=folder, env=_env(SLOW_STAGE="b"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _terminate_once_b_runs(folder, proc)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "stopped by SIGTERM" in out
    time.sleep(2)
    assert not _processes_in(folder)
    assert "b.json" not in _outputs(folder) and "last.json" not in _outputs(folder)


@pytest.mark.slow
def test_sigterm_to_dvc_repro_ends_its_stage(tmp_path):
    """DVC, killed, does not stop its stage: the stage notices its `dvc repro` is gone and ends itself."""
    folder = _project(tmp_path / "p")
    assert _run(folder, "dvc", "repro", "first").returncode == 0
    proc = subprocess.Popen([BIN / "dvc", "repro", "work@b"], cwd=folder, env=_env(SLOW_STAGE="b"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _terminate_once_b_runs(folder, proc)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 15
    while _processes_in(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_in(folder)
    assert "b.json" not in _outputs(folder)
    assert "work@b" in _run(folder, "dvc", "status").stdout


@pytest.mark.slow
def test_two_experiments_started_at_once_never_record_one_s_results_under_the_other_s_params(tmp_path):
    """`dvc exp run -S` writes params.yaml before DVC's lock can refuse it. A stage that finds its params
    changed under it fails in one line, so every experiment DVC keeps holds what its own params computed."""
    folder = _project(tmp_path / "p")
    for cmd in (["git", "init", "-q"], [BIN / "dvc", "config", "core.no_scm", "false"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline"]):
        subprocess.run(cmd, cwd=folder, check=True)
    env = _env(SLOW_STAGE="first", SLOW_SECONDS="6")
    procs = []
    for n in (2, 3):
        procs.append(subprocess.Popen([BIN / "dvc", "exp", "run", "-n", f"t{n}", "-S", f"threads={n}"], cwd=folder,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(2)  # the first is in its stage when the second rewrites params.yaml
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outs):
        if proc.returncode:
            # ours ("params.yaml changed while the stage ran", or a params.yaml caught mid-rewrite) or DVC's lock
            reasons = [l for l in out.splitlines() if l.startswith("latentlab first: error: params.yaml")
                       or "lock" in l.lower() or "being used by another" in l]
            assert reasons and "Traceback" not in out, out
    shown = json.loads(_run(folder, "dvc", "exp", "show", "--json").stdout)
    kept = [run for rev in shown for exp in (rev.get("experiments") or []) for run in exp["revs"]]
    assert sum(p.returncode == 0 for p in procs) == len(kept), (outs, kept)
    for run in kept:
        threads = run["data"]["params"]["params.yaml"]["data"]["threads"]
        applied = _run(folder, "dvc", "exp", "apply", run["name"])
        assert applied.returncode == 0, applied.stderr
        for name in ("first", "a", "last"):
            assert json.loads((folder / "out" / f"{name}.json").read_text())["threads"] == threads, (name, outs)


def test_a_first_run_orders_ready_stages_by_the_committed_times(tmp_path, monkeypatch):
    """No logs yet: stage-seconds.json puts the longest chain first; without it, dvc.yaml's order; a run's
    own logs win over it."""
    from latentlab.cli import parallel

    folder = _project(tmp_path / "p")
    monkeypatch.chdir(folder)
    assert parallel.plan(folder, [], force=True).order[1:4] == ["work@a", "work@b", "work@c"]
    (folder / "stage-seconds.json").write_text(json.dumps({"work@a": 5, "work@b": 30, "work@c": 12}))
    assert parallel.plan(folder, [], force=True).order[1:4] == ["work@b", "work@c", "work@a"]
    logs = folder / parallel.LOGS
    logs.mkdir(parents=True)
    (logs / "work@a.log").write_text("latentlab work: done [90.0 s]\n")
    assert parallel.plan(folder, [], force=True).order[1:4] == ["work@a", "work@b", "work@c"]
    (folder / "stage-seconds.json").write_text("{not json")
    assert parallel.plan(folder, [], force=True).order[0] == "first"
