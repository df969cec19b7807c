"""Stage train_classifier@<model>: train one Fashion-MNIST classifier; model, curves, metrics, confusion matrix."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from latentlab.studies import classifiers  # noqa: E402
from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import device, io, stage, tracking  # noqa: E402
from latentlab.models import training  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402


def main(params: dict) -> str:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in params["classifiers"]:
        raise LatentlabError(f"unknown classifier '{name}'; allowed: {', '.join(params['classifiers'])}")
    classifiers.build(name)  # a params block without its class fails here, before any data is read
    cfg = params["classifiers"][name]
    dev = device.resolve(params["device"])
    split = datasets.load_prepared("fashion_mnist_32")
    with tracking.start_run(stage.name(), {"classifiers": {name: cfg}, "device": str(dev)}) as run:
        model, history = classifiers.fit(name, cfg, split, dev, on_epoch=run.log_epoch)
        final = history.rows[-1]
        predictions = classifiers.predict(model, split["x_test"], dev, amp=device.use_amp(cfg["amp"], dev))
        matrix = classifiers.confusion_matrix(split["y_test"], predictions)
        metrics = {
            "test_acc": round(float((predictions == split["y_test"]).mean()), 4),
            "test_loss": round(final["test_loss"], 4),
            "train_acc": round(final["train_acc"], 4),
            "params": sum(p.numel() for p in model.parameters()),
            "epochs": cfg["epochs"],
        }
        model_path = Path(f"models/{name}.pt")
        training.save(model, history, model_path, f"plots/classifiers/{name}.csv")
        io.save_json(f"metrics/classifiers/{name}.json", metrics)
        classifiers.confusion_figure(f"figures/classifiers/{name}_confusion.png", matrix, datasets.FASHION_CLASSES,
                                        f"{name}: test accuracy {metrics['test_acc']:.4f}")
        run.log_training(metrics, history, model_path)
    return f"{name}: test accuracy {metrics['test_acc']:.4f} ({history.speed()['images_per_s']} images/s on {dev})"


if __name__ == "__main__":
    stage.run("train_classifier", main)
