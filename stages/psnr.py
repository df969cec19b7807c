"""Stage psnr: held-out PSNR of every dog autoencoder against its noise level — table, plot, MLflow.

Each train_ae_dogs_noisy@σ stage already measured its own model (metrics/ae_dogs/noisy_<σ>.json), so
this stage only gathers: adding a σ with `dvc exp run -S` trains that one model, and this takes seconds.
"""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from latentlab.studies import ae_dogs  # noqa: E402
from latentlab.runtime import io, stage, tracking  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402

COLUMNS = {"psnr_original_vs_noisy": "original vs noisy reconstruction",
           "psnr_clean_vs_noisy": "clean vs noisy reconstruction",
           "psnr_original_vs_clean": "original vs clean reconstruction"}


def _measured(sigma: float) -> dict:
    path = Path(f"metrics/ae_dogs/noisy_{sigma:g}.json")
    if not path.exists():
        raise LatentlabError(f"{path} is missing; run `dvc repro train_ae_dogs_noisy@{sigma:g}` first")
    return json.loads(path.read_text())


def main(params: dict) -> str:
    cfg = params["ae_dogs"]
    rows = [{"noise_std": sigma, **{k: _measured(sigma)[k] for k in COLUMNS}} for sigma in sorted(cfg["noise_std"])]
    base = json.loads(Path("metrics/ae_dogs/base.json").read_text()) if Path("metrics/ae_dogs/base.json").exists() else {}
    frame = pd.DataFrame(rows)
    with tracking.start_run(stage.name(), {"ae_dogs": {"noise_std": cfg["noise_std"]}}) as run:
        io.save_csv("plots/psnr/psnr_vs_noise.csv", frame)
        summary = {f"sigma_{r['noise_std']:g}": {k: r[k] for k in COLUMNS} for r in rows}
        if "heldout_psnr" in base:
            summary["base"] = {"psnr_original_vs_clean": base["heldout_psnr"]}
        io.save_json("metrics/psnr.json", summary)
        ae_dogs.psnr_figure("figures/psnr/psnr_vs_noise.png", frame, COLUMNS, base.get("heldout_psnr"))
        for r in rows:
            run.log_metrics({f"{k}_sigma_{r['noise_std']:g}": r[k] for k in COLUMNS})
        run.log_artifact("figures/psnr/psnr_vs_noise.png")
    return "; ".join(f"σ={r['noise_std']:g}: {r['psnr_original_vs_noisy']:.2f} dB" for r in rows)


if __name__ == "__main__":
    stage.run("psnr", main)
