"""Stage train_numpy_mlp: the from-scratch NumPy MLP on Fashion-MNIST 28x28; model, curves, metrics, weight figures."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

from pathlib import Path  # noqa: E402

from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import io, stage, tracking  # noqa: E402
from latentlab.studies import numpy_mlp  # noqa: E402

MODEL = Path("models/numpy_mlp.npz")


def main(params: dict) -> str:
    cfg = params["numpy_mlp"]
    split = datasets.load_prepared("fashion_mnist_28")
    with tracking.start_run(stage.name(), {"numpy_mlp": cfg}) as run:
        net, history = numpy_mlp.fit(cfg, split, on_epoch=run.log_epoch)
        final = history.rows[-1]
        metrics = {"test_acc": round(final["test_acc"], 4), "test_loss": round(final["test_loss"], 4),
                   "train_acc": round(final["train_acc"], 4), "params": sum(p.value.size for p in net.parameters())}
        speed = {"train_seconds": round(history.train_seconds, 1),
                 "seconds_per_epoch": round(history.train_seconds / cfg["epochs"], 2)}
        net.save(MODEL)
        io.save_csv("plots/numpy_mlp.csv", history.frame().round(5))
        io.save_json("metrics/numpy_mlp.json", metrics)
        numpy_mlp.weights_figure("figures/numpy_mlp/weights.png", net)
        numpy_mlp.first_layer_tiles("figures/numpy_mlp/first_layer_tiles.png", net)
        run.log_metrics({**metrics, **speed})
        run.log_artifact(MODEL)
    return f"test accuracy {metrics['test_acc']:.4f} ({speed['seconds_per_epoch']} s/epoch)"


if __name__ == "__main__":
    stage.run("train_numpy_mlp", main)
