"""DVC's promise, checked: every project module a stage can run is among that stage's `deps`.

The modules are found by reading imports, transitively, from the stage script: every `import` and
`from ... import` anywhere in a module counts, those inside functions too, since a stage may call
any of them. A module is covered when its file, or a folder above it, is a dep of the stage.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# Modules that cannot change an output, by name, each with its reason. Nothing else may be left out.
NO_EFFECT_ON_OUTPUTS = {
    "latentlab/__init__.py": "the version string",
    "latentlab/algorithms/__init__.py": "a docstring",
    "latentlab/data/__init__.py": "a docstring",
    "latentlab/models/__init__.py": "a docstring",
    "latentlab/studies/__init__.py": "a docstring",
    "latentlab/reporting/__init__.py": "a docstring",
}


def test_the_modules_left_out_hold_no_code():
    """An exclusion stays honest only while the module holds nothing but its docstring (and a version)."""
    for name in NO_EFFECT_ON_OUTPUTS:
        body = ast.parse((SRC / name).read_text()).body
        code = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
                and not (isinstance(n, ast.Assign) and [t.id for t in n.targets] == ["__version__"])]
        assert not code, f"{name} now holds code: name it in the stages' deps instead of excluding it"


def module_file(dotted: str) -> Path | None:
    base = SRC / Path(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path) -> set[str]:
    """The dotted names of the latentlab modules `path` imports (submodules named in `from x import y` too)."""
    tree = ast.parse(path.read_text())
    package = path.relative_to(SRC).with_suffix("").parts[:-1] if path.is_relative_to(SRC) else ()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {name for name in found if name.split(".")[0] == "latentlab" and module_file(name)}


def closure(script: Path) -> set[Path]:
    """Every project file the script can load: its imports, theirs, and each package's `__init__`."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
                todo.append(module_file(".".join(parts[:i])))
    return {p for p in seen if p is not None and p != script}


def stages() -> dict[str, dict]:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {s.name: {"cmd": s.cmd, "deps": [str(d.def_path) for d in s.deps]} for s in repo.index.stages}


STAGES = stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_module_a_stage_loads_is_a_dep(name):
    spec = STAGES[name]
    script = ROOT / shlex.split(spec["cmd"])[1]
    deps = [ROOT / d for d in spec["deps"]]
    assert script in deps, f"{name}: its script {script.relative_to(ROOT)} is not a dep"
    missing = sorted(str(m.relative_to(ROOT)) for m in closure(script)
                     if str(m.relative_to(SRC)) not in NO_EFFECT_ON_OUTPUTS
                     and not any(m == d or d in m.parents for d in deps))
    assert not missing, f"{name} runs code its deps do not name: {', '.join(missing)}"


def test_the_import_reader_follows_lazy_and_relative_imports(tmp_path):
    """The checker itself: an import inside a function counts, and so does every package on the way."""
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from latentlab.algorithms.tsne import TSNE\n")
    found = {str(p.relative_to(SRC)) for p in closure(script)}
    assert {"latentlab/__init__.py", "latentlab/algorithms/__init__.py", "latentlab/algorithms/tsne.py",
            "latentlab/algorithms/pca.py"} <= found  # tsne loads PCA lazily, for its init
