"""Stage vae_tradeoff: held-out PSNR against sample quality across KL weights β — table and figure.

The default run (metrics/vae.json, β = vae.kl_weight) and each train_vae_sweep@β point are gathered,
so a user sees what a larger β costs in reconstruction and buys in samples.
"""

import json
from pathlib import Path

import pandas as pd

from latentlab import io, plotting, stage
from latentlab.errors import LatentlabError


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
    fig, ax = plotting.plt.subplots(figsize=(6, 4.3))
    for r in frame.itertuples():  # one β: a faint vertical line through its three points, labelled once
        ax.plot([r.heldout_psnr] * 3, [r.fd_reconstruction, r.fd_fitted, r.fd_prior], color="0.85", lw=0.8, zorder=0)
        default = r.kl_weight == cfg["kl_weight"]
        ax.annotate(f"β={r.kl_weight:g}" + (" (default)" if default else ""), (r.heldout_psnr, r.fd_prior),
                    fontsize=7, fontweight="bold" if default else "normal", textcoords="offset points",
                    xytext=(-4, 6), ha="right" if r.heldout_psnr > frame["heldout_psnr"].mean() else "left")
    for column, label, marker in (("fd_prior", "prior N(0, I)", "o"), ("fd_fitted", "fitted Gaussian mixture", "s")):
        ax.plot(frame["heldout_psnr"], frame[column], marker=marker, label=f"samples from the {label}")
    ax.plot(frame["heldout_psnr"], frame["fd_reconstruction"], ls=":", marker=".", color="grey",
            label="held-out reconstructions (the floor)")
    ax.set_xlabel("held-out reconstruction PSNR (dB) →  better"), ax.set_ylabel("Fréchet distance to held-out faces")
    ax.set_yscale("log"), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    ax.set_title("face VAE: reconstruction vs sampling across the KL weight β")
    io.save_figure("figures/vae_tradeoff/tradeoff.png", fig)
    return "; ".join(f"β={r.kl_weight:g}: {r.heldout_psnr:.2f} dB, FD prior {r.fd_prior:.0f} / fitted {r.fd_fitted:.0f}"
                     for r in frame.itertuples())


if __name__ == "__main__":
    stage.run("vae_tradeoff", main)
