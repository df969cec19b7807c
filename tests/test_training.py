"""The shared training loop: it learns, it is deterministic, and a diverging loss stops it cleanly."""

from __future__ import annotations

import os

import pytest
import torch

from latentlab.runtime import tracking
from latentlab.models import training
from latentlab.runtime.errors import LatentlabError

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


def test_a_per_batch_schedule_warms_up_then_anneals_to_zero_over_every_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []

    def step(model, batch, train):
        if train:
            seen.append(opt.param_groups[0]["lr"])
        return _step(model, batch, train)

    sched = training.cosine_schedule(opt, epochs=2, batches_per_epoch=8, warmup_epochs=0.5)  # 16 steps, 4 warm-up
    training.fit(model, step, _toy(), None, epochs=2, optimizer=opt, scheduler=sched,
                 batch_size=32, device=CPU, seed=0, name="toy")
    assert seen[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])          # linear warm-up, one step at a time
    assert all(a > b for a, b in zip(seen[4:], seen[5:]))            # then falling at every step, not per epoch
    assert len(seen) == 16 and opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_diverging_loss_stops_with_stage_and_epoch_and_fails_the_run(mlflow_store):
    import mlflow

    with pytest.raises(LatentlabError, match=r"toy: training loss became (nan|inf) at epoch \d"):
        with tracking.start_run("toy", {}) as run:
            _fit(lr=5.0, epochs=30, on_epoch=run.log_epoch, step=_regression_step)
    assert mlflow.tracking.MlflowClient().get_run(run.run_id).info.status == "FAILED"


def test_amp_auto_follows_the_hardware(monkeypatch):
    """`amp: auto` turns bf16 on only for CUDA and for CPUs with bf16 units (elsewhere it is 4x slower)."""
    from latentlab.runtime import device as device_mod

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: False)
    assert not device_mod.use_amp("auto", cpu) and device_mod.use_amp("auto", cuda)
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert device_mod.use_amp("auto", cpu)
    assert device_mod.use_amp(True, cpu) and not device_mod.use_amp(False, cuda)


def test_autocast_dtype_is_bf16_unless_the_gpu_lacks_it_and_only_fp16_scales_the_loss(monkeypatch):
    """fp16's range flushes small gradients to zero without loss scaling; bf16 has float32's range."""
    from latentlab.runtime import device as device_mod

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert device_mod.amp_dtype(cpu) == device_mod.amp_dtype(cuda) == torch.bfloat16
    assert not device_mod.grad_scaler(cuda, amp=True).is_enabled()
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert device_mod.amp_dtype(cuda) == torch.float16 and device_mod.amp_dtype(cpu) == torch.bfloat16
    assert not device_mod.grad_scaler(cpu, amp=True).is_enabled()
    assert not device_mod.grad_scaler(cuda, amp=False).is_enabled()


def test_the_loss_scaler_leaves_a_cpu_run_unchanged():
    """fit goes through the scaler on every device; where it is off, the steps are plain SGD's, bit for bit."""
    torch.manual_seed(0)
    plain, fitted = torch.nn.Linear(8, 2), torch.nn.Linear(8, 2)
    fitted.load_state_dict(plain.state_dict())
    x, y = _toy(64)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):  # fit's own batch order: one seeded permutation per epoch
        order = torch.randperm(64, generator=generator)
        opt.zero_grad()
        _step(plain, (x[order], y[order]), True)[0].backward()
        opt.step()
    training.fit(fitted, _step, (x, y), None, epochs=3, optimizer=torch.optim.SGD(fitted.parameters(), lr=0.1),
                 batch_size=64, device=CPU, seed=0, name="toy")
    assert torch.equal(plain.weight, fitted.weight) and torch.equal(plain.bias, fitted.bias)


def test_a_cuda_device_turns_on_every_deterministic_setting(monkeypatch):
    """Where it takes a GPU, resolve sets what makes CUDA's results follow from the params: cuDNN's
    fixed algorithms, no autotuning, a fixed cuBLAS workspace, deterministic kernels (warning where none)."""
    from latentlab.runtime import device as device_mod

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on, warn_only=False: calls.append((on, warn_only)))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    assert device_mod.resolve("auto").type == "cuda"
    assert calls == [(True, True)]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls.clear()
    assert device_mod.resolve("auto").type == "cpu" and calls == []


def test_amp_param_takes_auto_or_a_boolean_only():
    from conftest import committed_params
    from latentlab.runtime import params

    for good in ("auto", True, False):
        assert params.validate(committed_params({"ae_dogs.amp": good}))["ae_dogs"]["amp"] == good
    assert params.validate(committed_params({"ae_mnist.variants.base.amp": False}))["ae_mnist"]["variants"]["base"]["amp"] is False


def test_a_fifth_classifier_is_one_class_and_one_params_block(tmp_path):
    """Register a class, add `tinynet: {epochs: 2}` under `classifiers:`: DVC then has its stage, with
    its model, curves, metrics and confusion matrix, and the class trains under the merged params."""
    import subprocess
    import sys

    import numpy as np
    from conftest import REPO

    from latentlab.studies import classifiers as study
    from latentlab.runtime import params
    from latentlab.models import classifiers

    @classifiers.architecture("tinynet")
    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 4, 3, stride=4)
            self.logits = torch.nn.Linear(4 * 8 * 8, 10)

        def forward(self, x):
            return self.logits(torch.relu(self.conv1(x)).flatten(1))

    try:
        text = (REPO / "params.yaml").read_text()
        assert "\nclassifiers:" in text
        head, tail = text.split("\nclassifiers:", 1)
        first_line, rest = tail.split("\n", 1)
        (tmp_path / "params.yaml").write_text(f"{head}\nclassifiers:{first_line}\n  tinynet: {{epochs: 2}}\n{rest}")
        (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
        subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
        listed = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=tmp_path,
                                capture_output=True, text=True, check=True).stdout.split()
        assert "train_classifier@tinynet" in listed and "train_classifier@lenet" in listed

        cfg = params.load(tmp_path / "params.yaml")["classifiers"]["tinynet"]
        assert cfg["epochs"] == 2 and cfg["lr"] == 0.05 and cfg["augment"] == {"crop_padding": 0, "hflip": True}
        rng = np.random.default_rng(0)
        split = {"x_train": rng.integers(0, 256, (256, 32, 32), dtype=np.uint8), "y_train": rng.integers(0, 10, 256),
                 "x_test": rng.integers(0, 256, (64, 32, 32), dtype=np.uint8), "y_test": rng.integers(0, 10, 64)}
        model, history = study.fit("tinynet", {**cfg, "epochs": 1}, split, CPU)
        assert isinstance(model, TinyNet) and len(history.rows) == 1
    finally:
        classifiers.ARCHITECTURES.pop("tinynet", None)


def test_a_params_block_without_its_class_is_refused_in_one_line():
    from latentlab.models import classifiers

    with pytest.raises(LatentlabError, match="no classifier class is registered as 'tinynet'; known: lenet"):
        classifiers.build("tinynet")
