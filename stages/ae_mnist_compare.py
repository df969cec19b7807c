"""Stage ae_mnist_compare: the latent codes of `base` and `l2` side by side (what L2 does to the code)."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

from latentlab.studies import ae_mnist  # noqa: E402
from latentlab.runtime import io, stage  # noqa: E402


def main(params: dict) -> str:
    panels = []
    for name in ("base", "l2"):
        codes = io.load_npz(f"models/ae_mnist/{name}_codes.npz")
        wd = params["ae_mnist"]["variants"][name]["weight_decay"]
        panels.append((codes["codes"], codes["labels"], f"{name} (weight decay {wd:g})"))
    ae_mnist.scatter_figure("figures/ae_mnist/base_vs_l2_latent.png", panels)
    return "figures/ae_mnist/base_vs_l2_latent.png"


if __name__ == "__main__":
    stage.run("ae_mnist_compare", main)
