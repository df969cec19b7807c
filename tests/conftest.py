"""Shared fixtures. Tests never touch the network: LATENTLAB_OFFLINE is set for the whole session."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ["LATENTLAB_OFFLINE"] = "1"
os.environ.setdefault("LATENTLAB_TRACKING_GRACE_S", "20")  # a test's dead tracking server fails in seconds
# Runs made by tests go to a throwaway store, never the repository's mlflow.db.
_STORE = tempfile.mkdtemp(prefix="latentlab-mlflow-")
atexit.register(shutil.rmtree, _STORE, ignore_errors=True)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STORE}/mlflow.db"
# pytest-xdist workers share the cores: each worker, and every stage it starts, takes its share of
# threads, since OpenMP threads spinning for a core another worker holds slow both workers down.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


def pytest_collection_modifyitems(items) -> None:
    """Modules with the most slow tests first: pytest-xdist (`--dist loadscope`) hands whole modules
    to the workers in this order, so the long ones start early and both workers end close together."""
    slow: dict[str, int] = {}
    for item in items:
        slow[item.module.__name__] = slow.get(item.module.__name__, 0) + bool(item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.module.__name__])  # stable: each module keeps its own order


@pytest.fixture(scope="session")
def mirrors() -> list[Path]:
    """The fetch stage's own mirror list: LATENTLAB_DATA_MIRRORS, else ../shared/datasets and the Debian package."""
    from latentlab.data import fetch

    found = [m for m in fetch.default_mirrors() if m.is_dir()]
    for dataset, hint in (("mnist", "put the shared datasets folder beside the checkout"),
                          ("fashion-mnist", "install the Debian package dataset-fashion-mnist (`make setup` does, as root)")):
        if not any((m / dataset).is_dir() for m in found):
            pytest.skip(f"no mirror holds {dataset}/ ({hint}, or set LATENTLAB_DATA_MIRRORS)")
    return found


@pytest.fixture(scope="session")
def raw_dir(mirrors, tmp_path_factory) -> Path:
    """data/raw as the fetch stage builds it, from the real mirrors, once per test session."""
    from latentlab.data import fetch

    dest = tmp_path_factory.mktemp("raw")
    fetch.fetch_all(dest, mirrors=mirrors)
    return dest


def _shared(tmp_path_factory, name: str, build) -> Path:
    """A file built once per test session and shared by the pytest-xdist workers (their temporary
    folders sit side by side): the first worker to ask builds it under a lock, the others wait and read it."""
    import filelock

    from latentlab.runtime import io

    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    with filelock.FileLock(f"{path}.lock"):
        if not path.exists():
            with io.atomic_path(path) as partial:
                build(partial)
    return path


@pytest.fixture(scope="session")
def empty_mlflow_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema and no runs: a new database takes MLflow ~1.5 s to migrate."""
    def migrate(path: Path) -> None:
        from mlflow.tracking import MlflowClient

        MlflowClient(f"sqlite:///{path}").search_experiments()

    return _shared(tmp_path_factory, "mlflow-empty.db", migrate)


@pytest.fixture(scope="session", autouse=True)
def _session_store(empty_mlflow_store) -> None:
    """The session's throwaway store starts as a copy of the empty one too."""
    if not Path(_STORE, "mlflow.db").exists():
        shutil.copyfile(empty_mlflow_store, Path(_STORE, "mlflow.db"))


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch, empty_mlflow_store) -> str:
    """A private SQLite MLflow store for one test (a copy of the empty one)."""
    shutil.copyfile(empty_mlflow_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def decoded_dogs(raw_dir, tmp_path_factory) -> tuple:
    """(images, names, skipped) of every dog photo, decoded once per session (about 10 s) for all workers."""
    import numpy as np

    from latentlab.data import datasets
    from latentlab.runtime import io

    def decode(path: Path) -> None:
        images, names, skipped = datasets.decode_dogs(raw_dir, size=64)
        with open(path, "wb") as f:
            np.savez(f, images=images, names=names, skipped=np.int64(skipped))

    arrays = io.load_npz(_shared(tmp_path_factory, "dogs64.npz", decode))
    return arrays["images"], arrays["names"], int(arrays["skipped"])


@pytest.fixture(scope="session")
def prepared(raw_dir, request):
    """`prepared(name)` -> the arrays the prepare stage would write, built from the mirrors (cached).

    Built here rather than read from data/prepared, which a fresh clone (CI) does not have.
    """
    from latentlab.data import datasets

    @functools.lru_cache(maxsize=None)
    def build(name: str) -> dict:
        if name in ("fashion_mnist_28", "fashion_mnist_32"):
            native, upsampled = datasets.prepare_fashion(raw_dir, size=32)
            return native if name.endswith("28") else upsampled
        builders = {"mnist": lambda: datasets.prepare_mnist(raw_dir),
                    "lfw_simplified": lambda: datasets.prepare_lfw_simplified(raw_dir),
                    "lfw4151": lambda: datasets.prepare_lfw4151(raw_dir, size=32),
                    "dogs": lambda: datasets.split_dogs(*request.getfixturevalue("decoded_dogs")[:2], test_fraction=0.1, seed=0)}
        return builders[name]()

    return build


def committed_params(overrides: dict | None = None) -> dict:
    """The committed params.yaml as read by YAML, unvalidated, with dotted-key overrides applied."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in (overrides or {}).items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    return params


def make_mini_project(root: Path, prepared=None, overrides: dict | None = None,
                      datasets: dict[str, int] | None = None) -> Path:
    """A working folder a stage script can run in: params.yaml with overrides, small prepared data.

    `overrides` maps dotted keys to values (`{"ae_mnist.base.epochs": 1}`); `datasets` maps a prepared
    dataset name to how many samples of each array to keep, sliced from `prepared(name)` (the fixture).
    """
    import numpy as np
    import yaml

    from latentlab.runtime import io

    root.mkdir(parents=True, exist_ok=True)
    (root / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())  # stages find their DVC name and outputs
    (root / "params.yaml").write_text(yaml.safe_dump(committed_params(overrides), sort_keys=False))
    for name, keep in (datasets or {}).items():
        arrays = prepared(name)
        io.save_npz(root / "data" / "prepared" / f"{name}.npz",
                    **{k: np.ascontiguousarray(v[:keep]) for k, v in arrays.items()})
    return root


def run_stage(root: Path, script: str, *args: str, env: dict | None = None, timeout: int = 300):
    """Run `stages/<script>` as DVC would (cwd = project root), returning the CompletedProcess."""
    import subprocess
    import sys

    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=root, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def assert_drawn(path: Path, min_width: int = 200, min_height: int = 150) -> None:
    """A figure really drawn: a PNG at least this large, with ink on it (not a blank or one-colour page)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        assert img.format == "PNG" and img.width >= min_width and img.height >= min_height, (path, img.size)
        grey = np.asarray(img.convert("L"), dtype=float)
    assert grey.std() > 5 and (grey < 160).mean() > 0.005, (path, grey.std(), (grey < 160).mean())
