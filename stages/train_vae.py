"""Stage train_vae: the face VAE; model, curves, held-out PSNR/KL/ELBO, reconstructions, interpolations, samples."""

import sys
from pathlib import Path

import numpy as np

from latentlab import data, device, io, plotting, stage, tracking, vae
from latentlab.errors import LatentlabError

DATASETS = {"lfw4151": "lfw4151", "lfw_simplified": "lfw_simplified"}
OUT = Path("plots/vae")


def main(params: dict) -> str:
    cfg = params["vae"]
    if cfg["pairs"] != "auto" and not all(isinstance(p, list) and len(p) == 2 for p in cfg["pairs"]):
        raise LatentlabError("params.yaml: vae.pairs must be 'auto' or a list of [i, j] index pairs")
    dataset = data.load_prepared(DATASETS[cfg["dataset"]])
    train_idx, heldout_idx = vae.split_indices(len(dataset["x"]), cfg["holdout_fraction"], cfg["seed"])
    pairs = vae.resolve_pairs(cfg, dataset, heldout_idx)  # checked before any training
    dev = device.resolve(params["device"])
    epochs = vae.epochs_for(cfg, len(train_idx))
    if epochs != cfg["epochs"]:
        print(f"latentlab train_vae: note: vae.epochs = {cfg['epochs']} raised to {epochs} by vae.min_steps = "
              f"{cfg['min_steps']}; set vae.min_steps: 0 to train exactly vae.epochs", file=sys.stderr)
    with tracking.start_run(stage.name(), {"vae": cfg, "effective_epochs": epochs}) as run:
        model, history = vae.fit(cfg, dataset["x"][train_idx], dataset["x"][heldout_idx], dev, on_epoch=run.log_epoch)
        metrics = vae.evaluate(model, dataset["x"][heldout_idx], dev, cfg)
        metrics.update(epochs=len(history.rows))
        speed = {"train_seconds": round(history.train_seconds, 1), "images_per_s": round(history.images_per_s)}
        io.save_torch("models/vae.pt", {k: v.cpu() for k, v in model.state_dict().items()})
        io.save_csv(OUT / "curves.csv", history.frame().round(4))
        io.save_json("metrics/vae.json", metrics)
        shown = dataset["x"][heldout_idx[:12]]
        plotting.image_grid(OUT / "reconstructions.png", [shown, vae.reconstruct(model, shown, dev)],
                            ["held-out", "reconstruction"], f"VAE on {cfg['dataset']}: held-out PSNR "
                            f"{metrics['heldout_psnr']:.2f} dB")
        strips = [vae.interpolate(model, dataset["x"][i], dataset["x"][j], cfg["alphas"], dev) for i, j in pairs]
        plotting.image_grid(OUT / "interpolations.png", strips, [f"{i} → {j}" for i, j in pairs],
                            "decoding (1−α)·z₁ + α·z₂ for α = " + ", ".join(f"{a:g}" for a in cfg["alphas"]))
        samples = vae.sample_prior(model, 64, cfg["seed"], dev)
        plotting.image_grid(OUT / "prior_samples.png", list(samples.reshape(8, 8, 3, 32, 32)),
                            title="samples from the prior N(0, I)")
        run.log_metrics({**metrics, **speed})
        run.log_artifact("models/vae.pt")
    return (f"{cfg['dataset']}: held-out PSNR {metrics['heldout_psnr']:.2f} dB, KL {metrics['heldout_kl']:.1f} "
            f"({np.mean(history.train_seconds):.0f} s training)")


if __name__ == "__main__":
    stage.run("train_vae", main)
