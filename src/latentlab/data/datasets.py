"""Raw files in, compact deterministic arrays out: IDX parsing, safe tar reading, image preparation.

Prepared datasets are uncompressed `.npz` files of uint8 images (N, H, W) or (N, C, H, W) and integer
labels, loaded with `allow_pickle=False`. Everything here is deterministic: the same raw files and
params give byte-identical outputs, which `metrics/data.json` records as checksums.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import struct
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from latentlab.runtime.errors import LatentlabError
from latentlab.runtime.io import load_npz

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------------------

def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode an IDX file's bytes (Yann LeCun's format): magic, dims, then row-major values."""
    if len(raw) < 4:
        raise LatentlabError(f"{name}: too short to be an IDX file; re-run `dvc repro fetch`")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        raise LatentlabError(f"{name}: not an IDX file (bad magic number); re-run `dvc repro fetch`")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[code])
    body = raw[4 + 4 * ndim:]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(body) != expected:
        raise LatentlabError(f"{name}: holds {len(body)} bytes of data, header says {expected}; "
                             "the file is truncated, re-run `dvc repro fetch`")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise LatentlabError(f"{path}: missing; run `dvc repro fetch` first") from None
    except (OSError, EOFError) as exc:
        raise LatentlabError(f"{path}: unreadable ({exc}); re-run `dvc repro fetch`") from None
    return parse_idx(raw, str(path))


def load_idx_split(folder: Path) -> dict[str, np.ndarray]:
    """The four IDX files of (Fashion-)MNIST as x_train, y_train, x_test, y_test."""
    return {
        "x_train": read_idx(folder / "train-images-idx3-ubyte.gz"),
        "y_train": read_idx(folder / "train-labels-idx1-ubyte.gz").astype(np.int64),
        "x_test": read_idx(folder / "t10k-images-idx3-ubyte.gz"),
        "y_test": read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64),
    }


# --- Tar archives ----------------------------------------------------------------------------

def check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse a member that would land outside the folder the archive is read into.

    Absolute names, `..` components, and links are what path-traversal archives use; reading such a
    member is refused outright rather than sanitised, since a verified archive never holds one.
    """
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.issym() or member.islnk() or member.isdev():
        raise LatentlabError(f"{archive}: member '{member.name}' would land outside the target folder; "
                             "refusing to read this archive")


def iter_tar_files(archive: Path, suffix: str = ".jpg") -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular file ending in `suffix`, sorted by name."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, archive)
            for member in sorted((m for m in members if m.isfile() and m.name.endswith(suffix)),
                                 key=lambda m: m.name):
                yield member.name, tar.extractfile(member).read()
    except FileNotFoundError:
        raise LatentlabError(f"{archive}: missing; run `dvc repro fetch` first") from None
    except tarfile.TarError as exc:
        raise LatentlabError(f"{archive}: not a readable tar archive ({exc}); re-run `dvc repro fetch`") from None


# --- Images ----------------------------------------------------------------------------------

def decode_square(data: bytes, size: int) -> np.ndarray:
    """JPEG bytes -> centre-cropped, resized (size, size, 3) uint8; raises OSError if unreadable."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (size * 2, size * 2))  # let libjpeg decode at a reduced scale: much faster
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR,
                                                                     reducing_gap=None)
        return np.asarray(img, dtype=np.uint8)


def resize_gray(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) uint8 -> (N, size, size) uint8 by bilinear interpolation, vectorised in torch."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).float().unsqueeze(1)
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).squeeze(1).numpy()


# --- Datasets --------------------------------------------------------------------------------

def prepare_fashion(raw: Path, size: int = 32) -> tuple[dict, dict]:
    """Fashion-MNIST at 28x28 (for the MLP) and upsampled to `size` (for the conv nets)."""
    native = load_idx_split(raw / "fashion-mnist")
    upsampled = dict(native, x_train=resize_gray(native["x_train"], size),
                     x_test=resize_gray(native["x_test"], size))
    return native, upsampled


def prepare_mnist(raw: Path) -> dict:
    return load_idx_split(raw / "mnist")


def prepare_lfw_simplified(raw: Path) -> dict:
    path = raw / "lfw" / "simplified-lfw-1000x3x32x32.npy"
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise LatentlabError(f"{path}: missing; run `dvc repro fetch` first") from None
    if x.shape != (1000, 3, 32, 32) or x.dtype != np.uint8:
        raise LatentlabError(f"{path}: expected uint8 (1000, 3, 32, 32), found {x.dtype} {x.shape}")
    return {"x": x}


def prepare_lfw4151(raw: Path, size: int = 32) -> dict:
    """The 4,151 LFW faces in manifest order, with person name and gender (0 = male, 1 = female)."""
    manifest = raw / "lfw" / "lfw-5590-80px-manifest.csv"
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = {PurePosixPath(name).name: data for name, data in iter_tar_files(raw / "lfw" / "lfw-5590-80px.tar")}
    x = np.empty((len(rows), 3, size, size), np.uint8)
    for i, row in enumerate(rows):
        if row["file"] not in images:
            raise LatentlabError(f"{manifest}: lists {row['file']}, which the archive lacks; re-run `dvc repro fetch`")
        x[i] = decode_square(images[row["file"]], size).transpose(2, 0, 1)
    return {
        "x": x,
        "gender": np.array([row["gender_MF"] == "F" for row in rows], dtype=np.uint8),
        "person": np.array([row["person"] for row in rows]),
    }


def prepare_dogs(raw: Path, size: int, test_fraction: float, seed: int) -> tuple[dict, int]:
    """Both dog archives, centre-cropped and resized, split by a seeded permutation."""
    images, names, skipped = decode_dogs(raw, size)
    return split_dogs(images, names, test_fraction, seed), skipped


def decode_dogs(raw: Path, size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Every readable photo of both archives as (N, 3, size, size) uint8, its member name, and how many were skipped.

    Unreadable members (truncated or not an image) are skipped and counted, not fatal: photo dumps
    like PetImages are known to hold a few, and one bad file should not cost the whole dataset.
    Pillow decodes and resizes without holding the GIL, so two threads decode on the two cores.
    """
    names, images, skipped = [], [], 0
    with ThreadPoolExecutor(2) as pool:
        for archive in ("stanford-dogs-2310.tar", "petimages-dogs-12499.tar"):
            members = list(iter_tar_files(raw / "dogs" / archive))
            for (name, _), image in zip(members, pool.map(lambda m: _readable(m[1], size), members)):
                if image is None:
                    skipped += 1
                    continue
                names.append(name)
                images.append(image)
    if not images:
        raise LatentlabError(f"{raw / 'dogs'}: no readable dog images; re-run `dvc repro fetch`")
    return np.stack(images).transpose(0, 3, 1, 2).copy(), np.array(names), skipped


def _readable(data: bytes, size: int) -> np.ndarray | None:
    """The decoded photo, or None for a member that is not a readable image."""
    try:
        return decode_square(data, size)
    except (OSError, ValueError, SyntaxError):
        return None


def split_dogs(images: np.ndarray, names: np.ndarray, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A seeded train/test split: the same seed, the same held-out photos on every machine."""
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return {"x_train": images[train], "x_test": images[test], "names_train": names[train], "names_test": names[test]}


def content_sha256(arrays: dict[str, np.ndarray]) -> str:
    """Checksum of the arrays themselves (names, dtypes, shapes, bytes), independent of npz framing."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def load_prepared(name: str, folder: Path = Path("data/prepared")) -> dict[str, np.ndarray]:
    """A prepared dataset by name (`fashion_mnist_32`, `mnist`, `lfw4151`, `dogs`, ...)."""
    path = folder / f"{name}.npz"
    if not path.is_file():
        raise LatentlabError(f"{path}: missing; run `dvc repro prepare` first")
    return load_npz(path, fix="delete it and run `dvc repro prepare`")
