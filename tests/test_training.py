"""The shared training loop: it learns, it is deterministic, and a diverging loss stops it cleanly."""

from __future__ import annotations

import pytest
import torch

from latentlab import tracking, training
from latentlab.errors import LatentlabError

CPU = torch.device("cpu")


def _toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def _step(model, batch, train):
    x, y = batch
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    return loss, {"acc": (logits.argmax(1) == y).sum()}


def _regression_step(model, batch, train):
    """Least squares: plain SGD diverges geometrically once lr exceeds 2 / the largest curvature."""
    x, y = batch
    return (model(x)[:, 0] - y.float()).pow(2).mean(), {}


def _fit(lr=0.1, epochs=5, seed=0, on_epoch=None, step=_step):
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    history = training.fit(model, step, _toy(), _toy(128, seed=1), epochs=epochs, optimizer=opt, batch_size=32,
                           device=CPU, seed=seed, name="toy", on_epoch=on_epoch)
    return model, history


def test_fit_learns_and_reports_per_epoch_rows():
    _, history = _fit()
    rows = history.rows
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc"}
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and rows[-1]["test_acc"] > 0.85
    assert history.train_images == 5 * 256 and history.images_per_s > 0


def test_same_seed_same_result_other_seed_differs():
    a, ha = _fit(seed=3)
    b, hb = _fit(seed=3)
    c, hc = _fit(seed=4)
    assert ha.rows == hb.rows and torch.equal(a.weight, b.weight)
    assert ha.rows != hc.rows


def test_diverging_loss_stops_with_stage_and_epoch_and_fails_the_run(mlflow_store):
    import mlflow

    with pytest.raises(LatentlabError, match=r"toy: training loss became (nan|inf) at epoch \d"):
        with tracking.start_run("toy", {}) as run:
            _fit(lr=5.0, epochs=30, on_epoch=run.log_epoch, step=_regression_step)
    assert mlflow.tracking.MlflowClient().get_run(run.run_id).info.status == "FAILED"


def test_amp_auto_follows_the_hardware(monkeypatch):
    """`amp: auto` turns bf16 on only for CUDA and for CPUs with bf16 units (elsewhere it is 4x slower)."""
    from latentlab import device as device_mod

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    assert not device_mod.use_amp("auto", cpu) and device_mod.use_amp("auto", cuda)
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert device_mod.use_amp("auto", cpu)
    assert device_mod.use_amp(True, cpu) and not device_mod.use_amp(False, cuda)


def test_amp_param_takes_auto_or_a_boolean_only():
    from conftest import committed_params
    from latentlab import params

    for good in ("auto", True, False):
        assert params.validate(committed_params({"ae_dogs.amp": good}))["ae_dogs"]["amp"] == good
    assert params.validate(committed_params({"ae_mnist.variants.base.amp": False}))["ae_mnist"]["variants"]["base"]["amp"] is False
