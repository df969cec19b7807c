"""What a pipeline run on a GPU machine has to show beyond its metrics, checked after `latentlab repro` there.

- Every MLflow run names the device its stage computed on and carries system metrics, the GPU's among
  them; the PyTorch stages trained on CUDA, while the NumPy, PCA and t-SNE work stayed on the CPU.
- bf16 and fp16 autocast train through the project's own loop (`training.fit`) with every deterministic
  setting on (`device.deterministic_cuda`): a finite, falling loss, and the same weights bit for bit
  from two runs of the same seed. fp16 is what a GPU without bf16 gets, with loss scaling; it is
  reached here by reporting bf16 as missing.
Prints markdown; exits 1 if a check fails. Usage: python benchmarks/gpu_checks.py
"""

from __future__ import annotations

import sys
import warnings
from unittest import mock

import torch

from latentlab.models import training
from latentlab.models.classifiers import build
from latentlab.runtime import device, tracking


def mlflow_runs() -> list[bool]:
    from mlflow.tracking import MlflowClient

    tracking._connect()
    client = MlflowClient()
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id], max_results=1000)]
    print(f"## MLflow: {len(runs)} runs\n")
    print("| stage | status | device | device.name | system metrics | GPU metrics | GPU util max % | GPU memory max MB |")
    print("|---|---|---|---|---|---|---|---|")
    ok = []
    for run in sorted(runs, key=lambda r: r.info.run_name):
        metrics, tags = run.data.metrics, run.data.tags
        system = [k for k in metrics if k.startswith("system/")]
        gpu = [k for k in system if k.startswith("system/gpu_")]

        def peak(key):
            history = client.get_metric_history(run.info.run_id, key) if key in metrics else []
            return f"{max(m.value for m in history):,.0f}" if history else "-"

        print(f"| {run.info.run_name} | {run.info.status} | {tags.get('device')} | {tags.get('device.name')} | "
              f"{len(system)} | {len(gpu)} | {peak('system/gpu_0_utilization_percentage')} | "
              f"{peak('system/gpu_0_memory_usage_megabytes')} |")
        ok.append(run.info.status == "FINISHED" and bool(gpu) and bool(tags.get("device.name")))
    on_cuda = sum(r.data.tags.get("device") == "cuda" for r in runs)
    print(f"\n{sum(ok)} of {len(runs)} runs FINISHED with the GPU's system metrics and a device name; "
          f"{on_cuda} computed on CUDA\n")
    return ok


def autocast_runs() -> list[bool]:
    """A LeNet-5 on random images, twice per precision, through the stages' own training loop."""
    dev = device.resolve("cuda")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2048, 1, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (2048,), generator=g)
    data = training.to_device((x, y), dev)

    def step(model, batch, train):
        images, labels = batch
        logits = model(images.float() / 255)
        return torch.nn.functional.cross_entropy(logits, labels), {}

    def train(seed):
        torch.manual_seed(seed)
        model = build("lenet").to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        history = training.fit(model, step, data, None, epochs=3, optimizer=opt, batch_size=128, device=dev,
                               seed=seed, amp=True, name="check")
        return [r["train_loss"] for r in history.rows], torch.cat([p.detach().flatten().float().cpu()
                                                                  for p in model.parameters()])

    print("## Autocast with the deterministic settings\n")
    print("| precision | loss scaling | train loss by epoch | same bytes twice | nondeterministic-op warnings |")
    print("|---|---|---|---|---|")
    ok = []
    for name, bf16 in (("bfloat16", True), ("float16", False)):
        with mock.patch.object(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert device.amp_dtype(dev) == (torch.bfloat16 if bf16 else torch.float16)
            scaled = device.grad_scaler(dev, True).is_enabled()
            (loss_a, w_a), (loss_b, w_b) = train(0), train(0)
        same = torch.equal(w_a, w_b) and loss_a == loss_b
        nondet = sorted({str(w.message).split(" does not have")[0] for w in caught if "deterministic" in str(w.message)})
        print(f"| {name} | {scaled} | {', '.join(f'{v:.4f}' for v in loss_a)} | {same} | {'; '.join(nondet) or 'none'} |")
        ok.append(same and all(map(torch.isfinite, map(torch.tensor, loss_a))) and loss_a[-1] < loss_a[0])
    print(f"\ncuDNN deterministic {torch.backends.cudnn.deterministic}, benchmark {torch.backends.cudnn.benchmark}, "
          f"deterministic algorithms {torch.are_deterministic_algorithms_enabled()}\n")
    return ok


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: nothing to check")
        return 1
    ok = mlflow_runs() + autocast_runs()
    print("all checks passed" if all(ok) else f"{ok.count(False)} checks failed")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
