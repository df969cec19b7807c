"""How much each headline result moves with the training seed: the pipeline's training stages, seeds 0, 1, 2.

Each seed trains every model with the default params but its seeds (`classifier_defaults.seed`,
`numpy_mlp.seed`, `vae.seed`, `ae_mnist.defaults.seed`, `ae_dogs.seed`) set to it, by the stages' own
scripts, in a scratch folder beside the checkout's prepared data (outputs and MLflow runs stay there).
The table gives each result per seed, the mean, min and max, and the margin of the worst seed over the
threshold: a difference between two runs smaller than the spread is noise. `--committed-seed0` reads
seed 0 from the checkout's `metrics/` instead of training it again (the committed run, on the same
kind of CPU: the same bytes). The results also go to FILE.json beside `--out`; `--only SCRIPT ...` with
`--previous FILE.json` trains only those stages again (after a change to their params) and keeps the
other results. Usage:
    python benchmarks/seed_spread.py [--seeds 0 1 2] [--committed-seed0] [--jobs 2] [--out FILE.md]
                                     [--only train_numpy_mlp.py ...] [--previous FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _scratch import REPO, default_params, run_stage, scratch

# (label, metrics file, key, threshold)
RESULTS = [
    ("LeNet-5 accuracy", "metrics/classifiers/lenet.json", "test_acc", 0.910),
    ("MyNet accuracy", "metrics/classifiers/mynet.json", "test_acc", 0.905),
    ("MyNet-BN accuracy", "metrics/classifiers/mynet_bn.json", "test_acc", 0.925),
    ("FashionNet accuracy", "metrics/classifiers/fashionnet.json", "test_acc", 0.935),
    ("NumPy MLP accuracy", "metrics/numpy_mlp.json", "test_acc", 0.895),
    ("face VAE PSNR (dB)", "metrics/vae.json", "heldout_psnr", 21.5),
    ("MNIST AE base PSNR (dB)", "metrics/ae_mnist/base.json", "test_psnr", 15.5),
    ("MNIST AE denoise gain (dB)", "metrics/ae_mnist/denoise.json", "psnr_gain", 4.2),
    ("MNIST AE wide PSNR (dB)", "metrics/ae_mnist/wide.json", "test_psnr", 24.0),
    ("dog AE σ = 0.05 PSNR (dB)", "metrics/ae_dogs/noisy_0.05.json", "psnr_original_vs_noisy", 26.0),
    ("dog AE σ = 0.1 PSNR (dB)", "metrics/ae_dogs/noisy_0.1.json", "psnr_original_vs_noisy", 24.9),
    ("dog AE σ = 0.15 PSNR (dB)", "metrics/ae_dogs/noisy_0.15.json", "psnr_original_vs_noisy", 24.5),
]

# Stage commands, longest chains first; a tuple runs in order (the noisy dog models need the base).
JOBS = [
    (("train_ae_dogs.py",), ("train_ae_dogs_noisy.py", "0.05"), ("train_ae_dogs_noisy.py", "0.1"),
     ("train_ae_dogs_noisy.py", "0.15")),
    (("train_classifier.py", "fashionnet"),),
    (("train_classifier.py", "mynet_bn"),),
    (("train_classifier.py", "lenet"),),
    (("train_classifier.py", "mynet"),),
    (("train_ae_mnist.py", "base"),),
    (("train_ae_mnist.py", "denoise"),),
    (("train_ae_mnist.py", "wide"),),
    (("train_vae.py",),),
    (("train_numpy_mlp.py",),),
]


def seeded_params(seed: int) -> dict:
    params = default_params()
    params["classifier_defaults"]["seed"] = seed
    params["numpy_mlp"]["seed"] = seed
    params["vae"]["seed"] = seed
    params["ae_mnist"]["defaults"]["seed"] = seed
    params["ae_dogs"]["seed"] = seed
    return params


def run_chain(folder: Path, chain: tuple) -> None:
    for script, *args in chain:
        summary, _ = run_stage(folder, script, *args)
        print(f"{folder.name}: {summary}", flush=True)


def results(folder: Path) -> dict[str, float]:
    """The results a run in `folder` wrote (a partial run, `--only`, writes some of them)."""
    return {label: json.loads((folder / path).read_text())[key] for label, path, key, _ in RESULTS
            if (folder / path).exists()}


def table(by_seed: dict[int, dict[str, float]]) -> str:
    seeds = sorted(by_seed)
    rows = ["| result | threshold | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | min | max | worst margin |",
            "|---|---|" + "---|" * (len(seeds) + 4)]
    for label, _, _, threshold in RESULTS:
        if any(label not in by_seed[s] for s in seeds):  # a partial run (`--only` without `--previous`)
            continue
        values = [by_seed[s][label] for s in seeds]
        digits = 4 if threshold < 1 else 2
        cells = [f"{v:.{digits}f}" for v in values + [statistics.mean(values), min(values), max(values)]]
        rows.append(f"| {label} | ≥ {threshold:g} | " + " | ".join(cells) + f" | {min(values) - threshold:+.{digits}f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--committed-seed0", action="store_true", help="seed 0 from the checkout's metrics/")
    ap.add_argument("--jobs", type=int, default=2, help="stages at once (each runs with params' threads)")
    ap.add_argument("--out", type=Path, help="also write the table here (and the results beside it, as .json)")
    ap.add_argument("--only", nargs="+", metavar="SCRIPT",
                    help="train only the chains holding these stage scripts ('train_classifier.py lenet': one stage)")
    ap.add_argument("--previous", type=Path, help="results of an earlier run (its .json) for everything else")
    args = ap.parse_args()
    jobs = [chain for chain in JOBS if not args.only or any(step[0] in args.only or " ".join(step) in args.only
                                                             for step in chain)]
    by_seed, root = {}, Path(tempfile.mkdtemp(prefix="latentlab-seeds-"))
    try:
        if args.committed_seed0 and 0 in args.seeds:
            by_seed[0] = results(REPO)
        todo = [(s, chain) for s in args.seeds if s not in by_seed for chain in jobs]
        folders = {s: scratch(root / f"seed{s}", seeded_params(s)) for s in {s for s, _ in todo}}
        start = time.perf_counter()
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: run_chain(folders[job[0]], job[1]), todo))
        previous = {int(k): v for k, v in json.loads(args.previous.read_text()).items()} if args.previous else {}
        for s, f in folders.items():
            by_seed[s] = {**previous.get(s, {}), **results(f)}
        from latentlab.runtime.reproducible import cpu_name

        text = (f"Seeds {', '.join(map(str, sorted(by_seed)))} on {cpu_name()}, {os.cpu_count()} cores"
                + (" (seed 0: the committed run)" if args.committed_seed0 else "")
                + f"; {time.perf_counter() - start:.0f} s of training, {args.jobs} stages at once.\n\n"
                + table(by_seed) + "\n")
        print(text)
        if args.out:
            args.out.write_text(text)
            args.out.with_suffix(".json").write_text(json.dumps(by_seed, indent=1) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
