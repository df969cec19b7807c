"""Stage prepare: raw files -> compact uint8 arrays in data/prepared/, checksums in metrics/data.json."""

from pathlib import Path

from latentlab import data, io, plotting, stage

RAW, OUT = Path("data/raw"), Path("data/prepared")


def main(params: dict) -> str:
    p = params["prepare"]
    fashion28, fashion32 = data.prepare_fashion(RAW, size=32)
    dogs, skipped = data.prepare_dogs(RAW, size=64, test_fraction=p["dogs"]["test_fraction"], seed=p["dogs"]["seed"])
    datasets = {
        "fashion_mnist_28": fashion28,
        "fashion_mnist_32": fashion32,
        "mnist": data.prepare_mnist(RAW),
        "lfw_simplified": data.prepare_lfw_simplified(RAW),
        "lfw4151": data.prepare_lfw4151(RAW, size=32),
        "dogs": dogs,
    }
    summary = {}
    for name, arrays in datasets.items():
        io.save_npz(OUT / f"{name}.npz", **arrays)
        summary[name] = {"sha256": data.content_sha256(arrays),
                         **{f"n_{k[2:] or 'images'}": len(v) for k, v in arrays.items() if k.startswith("x")}}
    summary["dogs"]["skipped_unreadable"] = skipped
    plotting.image_grid("figures/data/samples.png", [
        fashion32["x_test"][:10], datasets["mnist"]["x_test"][:10], datasets["lfw_simplified"]["x"][:10],
        datasets["lfw4151"]["x"][:10], dogs["x_test"][:10],
    ], ["Fashion-MNIST 32", "MNIST", "LFW simplified", "LFW-4151", "dogs 64"], title="prepared data (first test images)")
    io.save_json("metrics/data.json", summary)
    return (f"{len(datasets)} datasets in {OUT} (dogs: {len(dogs['x_train'])} train / "
            f"{len(dogs['x_test'])} test, {skipped} unreadable skipped)")


if __name__ == "__main__":
    stage.run("prepare", main)
