"""Stage train_vae: the face VAE; model, curves, held-out PSNR/KL/ELBO, sample quality and figures.

`train_vae.py <β>` is one point of the KL-weight sweep (stage train_vae_sweep@<β>): the same training
and measurements with `kl_weight` = β, metrics only, for the trade-off figure.
"""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import device, io, plotting, stage, tracking  # noqa: E402
from latentlab.models import training  # noqa: E402
from latentlab.studies import vae  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402

OUT = Path("figures/vae")


def main(params: dict) -> str:
    cfg = params["vae"]
    sweep_beta = _sweep_beta(cfg)
    if sweep_beta is not None:
        cfg = {**cfg, "kl_weight": sweep_beta}
    dataset = datasets.load_prepared(cfg["dataset"])
    train_idx, heldout_idx = vae.split_indices(len(dataset["x"]), cfg["holdout_fraction"], cfg["seed"])
    pairs = vae.resolve_pairs(cfg, dataset, heldout_idx)  # checked before any training
    train_x, heldout_x = dataset["x"][train_idx], dataset["x"][heldout_idx]
    dev = device.resolve(params["device"])
    epochs = vae.epochs_for(cfg, len(train_idx))
    if epochs != cfg["epochs"]:
        print(f"latentlab train_vae: note: vae.epochs = {cfg['epochs']} raised to {epochs} by vae.min_steps = "
              f"{cfg['min_steps']}; set vae.min_steps: 0 to train exactly vae.epochs", file=sys.stderr)
    with tracking.start_run(stage.name(), {"vae": cfg, "effective_epochs": epochs}) as run:
        model, history = vae.fit(cfg, train_x, heldout_x, dev, on_epoch=run.log_epoch)
        metrics = vae.evaluate(model, heldout_x, dev, cfg)
        quality, prior, fitted = vae.sample_quality(model, train_x, heldout_x, cfg, dev)
        metrics.update(quality, epochs=len(history.rows))
        if sweep_beta is not None:
            io.save_json(f"metrics/vae_sweep/beta_{sys.argv[1]}.json", {"kl_weight": sweep_beta, **metrics})
            run.log_metrics({**metrics, **history.speed()})
        else:
            training.save(model, history, "models/vae.pt", "plots/vae/curves.csv", digits=4)
            io.save_json("metrics/vae.json", metrics)
            _figures(model, cfg, dataset, heldout_x, pairs, metrics, prior, fitted, dev)
            run.log_training(metrics, history, "models/vae.pt")
    return (f"{cfg['dataset']}, β = {cfg['kl_weight']:g}: held-out PSNR {metrics['heldout_psnr']:.2f} dB, "
            f"KL {metrics['heldout_kl']:.1f}; Fréchet distance of samples: prior {metrics['fd_prior']:.1f}, fitted "
            f"{metrics['fd_fitted']:.1f} (reconstructions {metrics['fd_reconstruction']:.1f}) "
            f"({history.train_seconds:.0f} s training)")


def _sweep_beta(cfg: dict) -> float | None:
    if len(sys.argv) < 2:
        return None
    try:
        beta = float(sys.argv[1])
    except ValueError:
        beta = None
    if beta not in cfg["sweep_kl_weights"]:
        raise LatentlabError(f"usage: train_vae.py [β], β one of params.yaml vae.sweep_kl_weights "
                             f"{cfg['sweep_kl_weights']}; got '{sys.argv[1]}'")
    return beta


def _figures(model, cfg, dataset, heldout_x, pairs, metrics, prior, fitted, dev) -> None:
    shown = heldout_x[:12]
    plotting.image_grid(OUT / "reconstructions.png", [shown, vae.reconstruct(model, shown, dev)],
                        ["held-out", "reconstruction"], f"VAE on {cfg['dataset']}: held-out PSNR "
                        f"{metrics['heldout_psnr']:.2f} dB")
    strips = [vae.interpolate(model, dataset["x"][i], dataset["x"][j], cfg["alphas"], dev) for i, j in pairs]
    plotting.image_grid(OUT / "interpolations.png", strips, [f"{i} → {j}" for i, j in pairs],
                        "decoding (1−α)·z₁ + α·z₂ for α = " + ", ".join(f"{a:g}" for a in cfg["alphas"]))
    k = cfg["samples"]["gmm_components"]
    plotting.mosaics_side_by_side(
        OUT / "samples.png",
        [(f"prior N(0, I)\nFD {metrics['fd_prior']:.1f}", prior[:36]),
         (f"Gaussian mixture ({k}) fitted to training codes\nFD {metrics['fd_fitted']:.1f}", fitted[:36]),
         (f"held-out faces\n(their reconstructions: FD {metrics['fd_reconstruction']:.1f})", heldout_x[:36])],
        cols=6, title=f"VAE samples, β = {cfg['kl_weight']:g} (FD: Fréchet distance to held-out faces, lower is better)")


if __name__ == "__main__":
    stage.run("train_vae", main)
