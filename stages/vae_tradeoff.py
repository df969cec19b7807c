"""Stage vae_tradeoff: held-out PSNR against sample quality across KL weights β — table and figure.

The default run (metrics/vae.json, β = vae.kl_weight) and each train_vae_sweep@β point are gathered,
so a user sees what a larger β costs in reconstruction and buys in samples.
"""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from latentlab.runtime import io, stage  # noqa: E402
from latentlab.studies import vae  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402


def _read(path: Path, stage_name: str) -> dict:
    if not path.exists():
        raise LatentlabError(f"{path} is missing; run `dvc repro {stage_name}` first")
    return json.loads(path.read_text())


def main(params: dict) -> str:
    cfg = params["vae"]
    rows = [{"kl_weight": cfg["kl_weight"], **_read(Path("metrics/vae.json"), "train_vae")}]
    for beta in cfg["sweep_kl_weights"]:
        if beta != cfg["kl_weight"]:
            rows.append(_read(Path(f"metrics/vae_sweep/beta_{beta}.json"), f"train_vae_sweep@{beta}"))
    columns = ["kl_weight", "heldout_psnr", "heldout_kl", "fd_prior", "fd_fitted", "fd_reconstruction"]
    frame = pd.DataFrame(rows)[columns].sort_values("kl_weight").reset_index(drop=True)
    io.save_csv("plots/vae_tradeoff/tradeoff.csv", frame)
    vae.tradeoff_figure("figures/vae_tradeoff/tradeoff.png", frame, cfg["kl_weight"])
    return "; ".join(f"β={r.kl_weight:g}: {r.heldout_psnr:.2f} dB, FD prior {r.fd_prior:.0f} / fitted {r.fd_fitted:.0f}"
                     for r in frame.itertuples())


if __name__ == "__main__":
    stage.run("vae_tradeoff", main)
