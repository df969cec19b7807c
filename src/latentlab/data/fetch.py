"""Bringing raw data into `data/raw/`, verified, from mirrors first and the canonical URLs last.

A mirror is any folder holding `<dataset>/<file>` (the shared dataset folder, the Debian package's
`/usr/share/datasets`). A copy counts only if its SHA-256 matches; for gzip files whose bytes differ
between distributions the checksum is of the decompressed content. Nothing is written unless every
file was found: each verified copy waits under a temporary name and all are renamed at the end.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from latentlab.runtime.errors import LatentlabError
from latentlab.runtime.paths import repo_root

FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")


@dataclass(frozen=True)
class RawFile:
    dataset: str
    name: str
    sha256: str
    of_content: bool = False  # checksum of the gunzipped content, not of the file's bytes
    base_urls: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.name}"


CATALOGUE: tuple[RawFile, ...] = (
    RawFile("fashion-mnist", "train-images-idx3-ubyte.gz",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", True, (FASHION_URL,)),
    RawFile("fashion-mnist", "train-labels-idx1-ubyte.gz",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", True, (FASHION_URL,)),
    RawFile("fashion-mnist", "t10k-images-idx3-ubyte.gz",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", True, (FASHION_URL,)),
    RawFile("fashion-mnist", "t10k-labels-idx1-ubyte.gz",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", True, (FASHION_URL,)),
    RawFile("mnist", "train-images-idx3-ubyte.gz",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", True, MNIST_URLS),
    RawFile("mnist", "train-labels-idx1-ubyte.gz",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", True, MNIST_URLS),
    RawFile("mnist", "t10k-images-idx3-ubyte.gz",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", True, MNIST_URLS),
    RawFile("mnist", "t10k-labels-idx1-ubyte.gz",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", True, MNIST_URLS),
    # The LFW and dog files are repackagings with no canonical URL of their own: mirrors only.
    RawFile("lfw", "simplified-lfw-1000x3x32x32.npy",
            "9b67fb7aa55d21c89bb7eb15ac89de078cf01b7ea0516d21d4cedac6db5bf270"),
    RawFile("lfw", "lfw-5590-80px.tar", "7e2e68120d8589187ba2379bdd695cff6bae5ec9a1ebe70c8ffed350da3f8170"),
    RawFile("lfw", "lfw-5590-80px-manifest.csv",
            "5191fbbdadf5dd68cb587efb31f734c65efb05d5640019e0a5732f8656e62247"),
    RawFile("dogs", "stanford-dogs-2310.tar", "da20c47c98cd0c12a3ad8d78ec8eb39d0598ae344b4b708d5ae7fbbe570f3c7f"),
    RawFile("dogs", "stanford-dogs-2310-manifest.csv",
            "8a27f724b55f3e116a6e4077395128a2ce8554429940c5249e8866ef3724ba8f"),
    RawFile("dogs", "petimages-dogs-12499.tar", "9903449aac967d858d9721811e508a0e644d94f3051bba15398b27de487b9733"),
)


def default_mirrors() -> list[Path]:
    """`LATENTLAB_DATA_MIRRORS` (colon-separated) replaces the defaults when set."""
    env = os.environ.get("LATENTLAB_DATA_MIRRORS")
    if env:
        return [Path(p) for p in env.split(":") if p]
    return [repo_root().parent / "shared" / "datasets", Path("/usr/share/datasets")]


def sha256_of(path: Path, of_content: bool = False) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if of_content else open
    try:
        with opener(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:  # truncated or not gzip at all
        return f"unreadable ({type(exc).__name__})"
    return digest.hexdigest()


def _warn(message: str) -> None:
    print(f"latentlab fetch: warning: {message}", file=sys.stderr)


def _download(url: str, dest: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out)


def fetch_one(item: RawFile, tmp: Path, mirrors: list[Path], timeout: float, offline: bool) -> str:
    """Put a verified copy of `item` at `tmp`; return where it came from, or raise naming every try."""
    tried = []
    for mirror in mirrors:
        source = mirror / item.dataset / item.name
        if not source.is_file():
            tried.append(f"{source} (missing)")
            continue
        shutil.copyfile(source, tmp)
        got = sha256_of(tmp, item.of_content)
        if got == item.sha256:
            return str(source)
        _warn(f"{item.key} from {source}: sha256 {got} != expected {item.sha256}; skipped")
        tried.append(f"{source} (checksum mismatch)")
    for base in item.base_urls:
        url = base + item.name
        if offline:
            tried.append(f"{url} (skipped: LATENTLAB_OFFLINE is set)")
            continue
        try:
            _download(url, tmp, timeout)
        except OSError as exc:
            tried.append(f"{url} ({getattr(exc, 'reason', exc)})")
            continue
        got = sha256_of(tmp, item.of_content)
        if got == item.sha256:
            return url
        _warn(f"{item.key} from {url}: sha256 {got} != expected {item.sha256}; skipped")
        tried.append(f"{url} (checksum mismatch)")
    tmp.unlink(missing_ok=True)
    raise LatentlabError(
        f"no valid copy of {item.key}; tried: {'; '.join(tried) or 'no sources'}. "
        "Put a verified copy in a mirror folder (LATENTLAB_DATA_MIRRORS) or go online"
    )


def fetch_all(dest: Path, mirrors: list[Path] | None = None, timeout: float = 60.0,
              catalogue: tuple[RawFile, ...] = CATALOGUE) -> dict[str, str]:
    """Fetch every catalogue file into `dest/<dataset>/<file>`; all or nothing.

    Copies wait in a staging folder beside `dest` and are renamed into place only once every file
    has verified, so a failure (or a kill) never leaves a partial `data/raw`.
    """
    mirrors = default_mirrors() if mirrors is None else mirrors
    offline = bool(os.environ.get("LATENTLAB_OFFLINE"))
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    sources: dict[str, str] = {}
    try:
        for item in catalogue:
            sources[item.key] = fetch_one(item, staging / f"{item.dataset}--{item.name}", mirrors, timeout, offline)
        for item in catalogue:
            final = dest / item.dataset / item.name
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / f"{item.dataset}--{item.name}", final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sources
