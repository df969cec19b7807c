"""Stage train_ae_mnist@<variant>: one MNIST autoencoder; model, curves, metrics, figures."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from latentlab.studies import ae_mnist  # noqa: E402
from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import device, io, plotting, stage, tracking  # noqa: E402
from latentlab.models import training  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402


def main(params: dict) -> str:
    variants = params["ae_mnist"]["variants"]
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in variants:
        raise LatentlabError(f"unknown autoencoder variant '{name}'; allowed: {', '.join(variants)}")
    cfg, grid = variants[name], params["ae_mnist"]["latent_grid"]
    dev = device.resolve(params["device"])
    split = datasets.load_prepared("mnist")
    out = Path(f"figures/ae_mnist/{name}")
    with tracking.start_run(stage.name(), {"ae_mnist": {name: cfg, "latent_grid": grid}}) as run:
        model, history = ae_mnist.fit(cfg, split, dev, stage.name(), on_epoch=run.log_epoch)
        metrics, inputs, recon = ae_mnist.evaluate(model, split["x_test"], cfg["noise_factor"], cfg["seed"], dev)
        metrics.update(bottleneck=cfg["bottleneck"])
        model_path = Path(f"models/ae_mnist/{name}.pt")
        training.save(model, history, model_path, f"plots/ae_mnist/{name}.csv")
        io.save_json(f"metrics/ae_mnist/{name}.json", metrics)
        codes = ae_mnist.encode(model, split["x_test"], dev)
        io.save_npz(f"models/ae_mnist/{name}_codes.npz", codes=codes, labels=split["y_test"])
        show = np.arange(12)
        clean = split["x_test"][show]
        if cfg["noise_factor"]:
            plotting.image_grid(out / "reconstructions.png", [inputs[show], recon[show], clean],
                                ["noisy", "denoised", "clean"], f"{name}: PSNR {metrics['noisy_input_psnr']:.1f} → "
                                f"{metrics['test_psnr']:.1f} dB")
        else:
            plotting.image_grid(out / "reconstructions.png", [clean, recon[show]], ["original", "reconstruction"],
                                f"{name}: test PSNR {metrics['test_psnr']:.2f} dB")
        if cfg["bottleneck"] == 2:  # a plane to draw: the codes, and the decoder over a grid of it
            ae_mnist.scatter_figure(out / "latent.png", [(codes, split["y_test"], f"{name}: test-set codes")])
            tiles = ae_mnist.decode_grid(model, grid["low"], grid["high"], grid["size"], dev)
            ae_mnist.grid_figure(out / "latent_grid.png", tiles, grid["low"], grid["high"],
                                 f"{name}: decoder over a {grid['size']}x{grid['size']} latent grid")
        run.log_training(metrics, history, model_path)
    return f"{name}: test PSNR {metrics['test_psnr']:.2f} dB" + (
        f" (+{metrics['psnr_gain']:.2f} dB over its noisy input)" if "psnr_gain" in metrics else "")


if __name__ == "__main__":
    stage.run("train_ae_mnist", main)
