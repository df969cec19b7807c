"""Stage prepare: raw files -> compact uint8 arrays in data/prepared/, checksums in metrics/data.json."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

from pathlib import Path  # noqa: E402

from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import io, plotting, stage  # noqa: E402

RAW, OUT = Path("data/raw"), Path("data/prepared")


def main(params: dict) -> str:
    p = params["prepare"]
    summary, samples = {}, {}

    def write(name: str, arrays: dict, label: str | None = None) -> None:
        """Each dataset is written as soon as it is built (the dog photos, the slowest, last)."""
        io.save_npz(OUT / f"{name}.npz", **arrays)
        summary[name] = {"sha256": datasets.content_sha256(arrays),
                         **{f"n_{k[2:] or 'images'}": len(v) for k, v in arrays.items() if k.startswith("x")}}
        if label is not None:
            samples[label] = arrays["x_test" if "x_test" in arrays else "x"][:10]

    fashion28, fashion32 = datasets.prepare_fashion(RAW, size=32)
    write("fashion_mnist_28", fashion28)
    write("fashion_mnist_32", fashion32, "Fashion-MNIST 32")
    write("mnist", datasets.prepare_mnist(RAW), "MNIST")
    write("lfw_simplified", datasets.prepare_lfw_simplified(RAW), "LFW simplified")
    write("lfw4151", datasets.prepare_lfw4151(RAW, size=32), "LFW-4151")
    dogs, skipped = datasets.prepare_dogs(RAW, size=64, test_fraction=p["dogs"]["test_fraction"], seed=p["dogs"]["seed"])
    write("dogs", dogs, "dogs 64")
    summary["dogs"]["skipped_unreadable"] = skipped
    plotting.image_grid("figures/data/samples.png", list(samples.values()), list(samples),
                        title="prepared data (first test images)")
    io.save_json("metrics/data.json", summary)
    return (f"{len(summary)} datasets in {OUT} (dogs: {len(dogs['x_train'])} train / "
            f"{len(dogs['x_test'])} test, {skipped} unreadable skipped)")


if __name__ == "__main__":
    stage.run("prepare", main)
