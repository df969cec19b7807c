"""Stage train_ae_dogs_noisy@<σ>: a noise-regularised dog autoencoder (power-normalised code + N(0, σ²))."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import sys  # noqa: E402

from latentlab.studies import ae_dogs  # noqa: E402
from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import device, io, stage, tracking  # noqa: E402
from latentlab.models import training  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402


def main(params: dict) -> str:
    cfg = params["ae_dogs"]
    try:
        sigma = float(sys.argv[1])
    except (IndexError, ValueError):
        raise LatentlabError("usage: train_ae_dogs_noisy.py <noise_std>, one of params.yaml ae_dogs.noise_std") from None
    if sigma not in cfg["noise_std"]:
        raise LatentlabError(f"noise_std {sigma} is not listed in params.yaml ae_dogs.noise_std {cfg['noise_std']}")
    dev = device.resolve(params["device"])
    split = datasets.load_prepared("dogs")
    name = stage.name()
    with tracking.start_run(name, {"ae_dogs": {k: v for k, v in cfg.items() if k != "latent"}, "noise_std": sigma}) as run:
        init = "models/ae_dogs/base.pt" if cfg["noisy"]["warm_start"] else None
        model, history = ae_dogs.fit(cfg, split, dev, sigma, init, name, on_epoch=run.log_epoch)
        path = f"models/ae_dogs/noisy_{sigma:g}.pt"
        training.save(model, history, path, f"plots/ae_dogs/noisy_{sigma:g}.csv")
        metrics = ae_dogs.psnr_pair(sigma, model, split["x_test"], dev, cfg["seed"])
        io.save_json(f"metrics/ae_dogs/noisy_{sigma:g}.json", metrics)
        run.log_training(metrics, history, path)
    return (f"σ = {sigma:g}: held-out PSNR original vs noisy reconstruction {metrics['psnr_original_vs_noisy']:.2f} dB "
            f"({history.speed()['images_per_s']} images/s)")


if __name__ == "__main__":
    stage.run("train_ae_dogs_noisy", main)
