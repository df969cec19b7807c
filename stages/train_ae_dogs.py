"""Stage train_ae_dogs: the base 64x64 dog autoencoder (8x8x16 code), trained without channel noise."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

from latentlab.studies import ae_dogs  # noqa: E402
from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import device, io, plotting, stage, tracking  # noqa: E402
from latentlab.models import training  # noqa: E402


def main(params: dict) -> str:
    cfg = params["ae_dogs"]
    dev = device.resolve(params["device"])
    split = datasets.load_prepared("dogs")
    with tracking.start_run(stage.name(), {"ae_dogs": {k: v for k, v in cfg.items() if k != "latent"}}) as run:
        model, history = ae_dogs.fit(cfg, split, dev, on_epoch=run.log_epoch)
        normalize = cfg["base"]["normalize"]
        metrics = {"heldout_psnr": ae_dogs.psnr_clean(model, split["x_test"], dev, normalize)}
        training.save(model, history, "models/ae_dogs/base.pt", "plots/ae_dogs/base.csv")
        io.save_json("metrics/ae_dogs/base.json", metrics)
        shown = split["x_test"][:10]
        plotting.image_grid("figures/ae_dogs/base_reconstructions.png",
                            [shown, ae_dogs.reconstruct(model, shown, dev, normalize=normalize)], ["held-out", "reconstruction"],
                            f"base autoencoder: held-out PSNR {metrics['heldout_psnr']:.2f} dB")
        run.log_training(metrics, history, "models/ae_dogs/base.pt")
    return f"held-out PSNR {metrics['heldout_psnr']:.2f} dB ({history.speed()['images_per_s']} images/s)"


if __name__ == "__main__":
    stage.run("train_ae_dogs", main)
