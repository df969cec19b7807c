"""Stage ae_dogs_latent: what the base model's 8x8x16 code holds — channel maps, Gaussian samples, blends, noise."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import numpy as np  # noqa: E402

from latentlab.studies import ae_dogs  # noqa: E402
from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import device, io, plotting, stage  # noqa: E402


def main(params: dict) -> str:
    cfg, lat = params["ae_dogs"], params["ae_dogs"]["latent"]
    dev = device.resolve(params["device"])
    x_test = datasets.load_prepared("dogs")["x_test"]
    model = ae_dogs.build(cfg, dev)
    io.load_weights(model, "models/ae_dogs/base.pt")
    rng = np.random.default_rng(cfg["seed"])
    shown = x_test[np.sort(rng.choice(len(x_test), lat["n_show"], replace=False))]
    normalize = cfg["base"]["normalize"]
    codes = ae_dogs.encode(model, shown, dev, normalize)
    ae_dogs.channel_maps_figure("figures/ae_dogs/latent_channels.png", shown, ae_dogs.decode(model, codes, dev), codes)
    fit_codes = ae_dogs.encode(model, x_test[rng.choice(len(x_test), lat["n_fit"], replace=False)], dev, normalize)
    samples = ae_dogs.gaussian_samples(fit_codes, lat["n_show"], cfg["seed"])
    blended = (1 - lat["blend"]) * codes + lat["blend"] * samples
    noisy = codes + lat["code_noise"] * codes.std() * rng.standard_normal(codes.shape).astype(np.float32)
    plotting.image_grid("figures/ae_dogs/latent_experiments.png", [
        shown, ae_dogs.decode(model, codes, dev), ae_dogs.decode(model, samples, dev),
        ae_dogs.decode(model, blended, dev), ae_dogs.decode(model, noisy, dev),
    ], ["original", "reconstruction", f"Gaussian sample\n(fit to {lat['n_fit']} codes)",
        f"blend {lat['blend']:g}\nsample + real", f"real code\n+ noise {lat['code_noise']:g}·std"],
        "decoding codes: real, sampled from a fitted Gaussian, blended, and perturbed")
    return "figures/ae_dogs/latent_channels.png, figures/ae_dogs/latent_experiments.png"


if __name__ == "__main__":
    stage.run("ae_dogs_latent", main)
