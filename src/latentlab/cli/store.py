"""What a DVC remote holds, checked against `dvc.lock`: after every pull, and on demand with repair.

DVC's `verify = true` re-hashes the files it downloads, but not the folder listings (`.dir` objects)
that say which files a folder output holds: a listing with an entry dropped, or pointing one name at
another file's object, is checked out as it is. So after a pull every output in the workspace is
compared with the hash `dvc.lock` records for it, and `latentlab store check` re-hashes, in the store
itself, every object `dvc.lock` needs: listings included, and a clone whose cache holds good copies
re-uploads the damaged or missing ones (`--repair`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from latentlab.runtime.errors import LatentlabError


def altered_outputs(repo) -> list[str]:
    """Outputs in the workspace whose content differs from what `dvc.lock` records, re-hashed byte by
    byte (DVC's own status trusts the hash it recorded when it checked a file out). A folder's listing
    must hash to its name, and its files must be exactly the listed ones with the listed hashes. Absent
    outputs are not altered: the pipeline computes them."""
    altered = []
    for stage in repo.index.stages:
        for out in stage.outs:
            info, path = out.hash_info, Path(out.fs_path)
            if not (info and info.value) or not path.exists():
                continue
            if not (_folder_matches(repo, path, info.value) if info.isdir else _file_md5(path) == info.value):
                altered.append(str(out))
    return altered


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - DVC's content address, not a security hash
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_matches(repo, path: Path, oid: str) -> bool:
    listing = _read(repo.cache.local, oid, verify=True)
    if listing is None or not path.is_dir():
        return False
    expected = {entry["relpath"]: entry["md5"] for entry in json.loads(listing)}
    found = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file()}
    return set(found) == set(expected) and all(_file_md5(found[rel]) == md5 for rel, md5 in expected.items())


def refused_outputs(repo) -> list[str]:
    """Outputs absent from the workspace although the store holds their object: DVC downloaded it and
    refused it (its bytes did not match its hash), and `--allow-missing` let the pull end without it."""
    remote = repo.cloud.get_remote_odb(None, "pull")
    refused = []
    for stage in repo.index.stages:
        for out in stage.outs:
            info = out.hash_info
            if out.use_cache and info and info.value and not Path(out.fs_path).exists() \
                    and remote.fs.exists(remote.oid_to_path(info.value)):
                refused.append(str(out))
    return refused


def check_workspace(root: Path) -> None:
    """After a pull: one line naming every output that is not what `dvc.lock` records, or that the
    store holds but could not give intact."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        bad = altered_outputs(repo) + refused_outputs(repo)
    if bad:
        raise LatentlabError(
            f"{', '.join(bad)}: not what dvc.lock records, after the pull; nothing was run on "
            f"{'them' if len(bad) > 1 else 'it'}. The store may hold a damaged or altered copy: `latentlab store "
            "check` names it (a clone with good copies repairs it with --repair); or delete the output and run "
            "`latentlab repro` to compute it here")


@dataclass
class Report:
    checked: int = 0
    damaged: list[str] = field(default_factory=list)  # object ids whose bytes do not hash to their name
    missing: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    unrepairable: list[str] = field(default_factory=list)  # damaged or missing, with no good local copy
    names: dict[str, str] = field(default_factory=dict)  # object id -> the output path it belongs to


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - DVC's content address, not a security hash


def check_store(root: Path, repair: bool = False, rev: str | None = None) -> Report:
    """Re-hash every object `dvc.lock` (of the workspace, or of git revision `rev`) needs in the default
    remote; with `repair`, upload good copies from this clone's cache in place of damaged or missing ones."""
    import contextlib

    from dvc.repo import Repo
    from dvc.repo.brancher import switch

    report = Report()
    with Repo(str(root)) as repo:
        remote = repo.cloud.get_remote_odb(None, "push")
        local = repo.cache.local
        wanted: dict[str, str] = {}
        with switch(repo, rev) if rev else contextlib.nullcontext():
            for stage in repo.index.stages:
                for out in stage.outs:
                    if out.use_cache and out.hash_info and out.hash_info.value:  # git holds the others
                        wanted[out.hash_info.value] = str(out)
        queue = list(wanted)
        while queue:
            oid = queue.pop()
            report.checked += 1
            data = _read(remote, oid)
            good_local = _read(local, oid, verify=True)
            if data is None or _md5(data) != oid.removesuffix(".dir"):
                (report.missing if data is None else report.damaged).append(oid)
                if repair and good_local is not None:
                    remote.fs.pipe_file(remote.oid_to_path(oid), good_local)
                    report.repaired.append(oid)
                elif repair:
                    report.unrepairable.append(oid)
                data = good_local
            if oid.endswith(".dir") and data is not None:
                for entry in json.loads(data):
                    wanted.setdefault(entry["md5"], f"{wanted[oid]}/{entry['relpath']}")
                    if entry["md5"] not in queue and entry["md5"] not in report.names:
                        queue.append(entry["md5"])
            report.names[oid] = wanted[oid]
    return report


def _read(odb, oid: str, verify: bool = False) -> bytes | None:
    """The object's bytes from `odb` (with `verify`, only when they hash to its name), or None."""
    try:
        data = odb.fs.cat_file(odb.oid_to_path(oid))
    except (FileNotFoundError, OSError):
        return None
    if verify and _md5(data) != oid.removesuffix(".dir"):
        return None
    return data


def describe(report: Report, repair: bool) -> list[str]:
    lines = [f"latentlab store: {report.checked} objects that dvc.lock needs checked"]
    for kind, oids in (("damaged", report.damaged), ("missing", report.missing)):
        lines += [f"  {kind}: {report.names.get(o, o)} ({o})" for o in oids]
    if repair:
        lines += [f"  re-uploaded from this clone's cache: {report.names.get(o, o)}" for o in report.repaired]
        lines += [f"  no good copy here: {report.names.get(o, o)}; repair it from a clone that has one, "
                  "or recompute and push it" for o in report.unrepairable]
    elif report.damaged or report.missing:
        lines.append("  a clone whose cache holds good copies re-uploads them: latentlab store check --repair")
    else:
        lines.append("  every object is intact")
    return lines
