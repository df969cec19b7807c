"""Each stage family quiet against beside one busy core: the stage's own script, shortened, side by side in one run.

A stage must stay steady when something else takes a core (a laptop always has something running):
its fair share of a 2-core machine is half, so it may take at most 2x its quiet time, and the MNIST
autoencoders, whose second thread buys little, at most 1.5x. Each family runs a short version of its
stage (fewer epochs or iterations, the default params otherwise) in a scratch folder, first on a quiet
machine, then beside a spin loop in another process, alternating `--repeats` times; the ratio is of
the medians. `--threads` sets params' `threads` (default: params.yaml's); `--threads 2` shows what a
second torch thread costs under load. Usage:
    python benchmarks/bench_load.py [--families classifiers numpy_mlp vae ae_mnist ae_dogs tsne_full]
                                    [--threads N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _scratch import default_params, run_stage, scratch

# family: (changes to the default params, stage commands, allowed loaded/quiet ratio)
FAMILIES = {
    "classifiers": ({"classifiers.fashionnet.epochs": 2}, [("train_classifier.py", "fashionnet")], 2.0),
    "numpy_mlp": ({"numpy_mlp.epochs": 2}, [("train_numpy_mlp.py",)], 2.0),
    "vae": ({"vae.epochs": 3, "vae.min_steps": 0}, [("train_vae.py",)], 2.0),
    "ae_mnist": ({"ae_mnist.variants.wide.epochs": 3, "ae_mnist.defaults.epochs": 3},
                 [("train_ae_mnist.py", "wide"), ("train_ae_mnist.py", "base")], 1.5),
    "ae_dogs": ({"ae_dogs.base.epochs": 1}, [("train_ae_dogs.py",)], 2.0),
    # the 70,000-point maps of a 1-epoch FashionNet, with t-SNE's shortest schedule
    "tsne_full": ({"classifiers.fashionnet.epochs": 1, "tsne_full.iterations": 250}, [("tsne_full.py",)], 2.0),
}
PREREQUISITES = {"tsne_full": [("train_classifier.py", "fashionnet")]}


def with_changes(params: dict, changes: dict) -> dict:
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        node = params
        for part in path:
            node = node[part]
        node[key] = value
    return params


def timed(folder: Path, commands: list[tuple]) -> float:
    return sum(run_stage(folder, *command)[1] for command in commands)


def measure(family: str, threads: int | None, repeats: int, root: Path) -> tuple[float, float, float]:
    changes, commands, limit = FAMILIES[family]
    params = with_changes(default_params(), changes)
    if threads:
        params["threads"] = threads
    folder = scratch(root / f"{family}-{threads}", params)
    for command in PREREQUISITES.get(family, []):
        run_stage(folder, *command)
    quiet, loaded = [], []
    for _ in range(repeats):
        quiet.append(timed(folder, commands))
        spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            loaded.append(timed(folder, commands))
        finally:
            spin.kill()
            spin.wait()
    return statistics.median(quiet), statistics.median(loaded), limit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    ap.add_argument("--threads", type=int, help="params' threads for every stage (default: params.yaml's)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="latentlab-load-"))
    threads = args.threads or default_params()["threads"]
    print(f"threads per stage: {threads}; one spin loop beside the loaded runs\n")
    print("| family | what runs | quiet | beside a busy core | ratio | allowed |")
    print("|---|---|---|---|---|---|")
    try:
        for family in args.families:
            quiet, loaded, limit = measure(family, args.threads, args.repeats, root)
            what = ", ".join(" ".join(c) for c in FAMILIES[family][1])
            print(f"| {family} | {what} | {quiet:.1f} s | {loaded:.1f} s | {loaded / quiet:.2f}x | ≤ {limit:g}x |",
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
