"""The report: one self-contained page with a section per study, rendered by headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from latentlab.runtime import plotting
from latentlab.reporting import report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
def run_outputs(tmp_path) -> Path:
    """A small tree shaped like a pipeline run: a metric, a curve and a figure for every section."""
    for section in report.SECTIONS:
        metric = tmp_path / section.metrics[0].replace("*", "model")
        metric.parent.mkdir(parents=True, exist_ok=True)
        metric.write_text(json.dumps({"model": {"test_score": 0.9, "seconds": 12.5}}))
        figure = tmp_path / section.figures[0].replace("*", "figure")
        plotting.image_grid(figure, [np.full((2, 8, 8), 0.5 + 0.2 * i) for i in range(2)], ["a", "b"])
        if section.curves:
            curve = tmp_path / section.curves[0].replace("*", "model")
            curve.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "test_loss": [1.1, 0.7]}).to_csv(curve, index=False)
    return tmp_path


def test_every_section_has_its_outputs(run_outputs):
    page, counts = report.build({"prepare": {"dogs": {"seed": 0}}}, root=run_outputs)
    assert counts == {s.key: 1 for s in report.SECTIONS}
    for section in report.SECTIONS:
        assert f"<section id='{section.key}'>" in page
    assert page.count("data:image/png;base64,") == len(report.SECTIONS) + sum(1 for s in report.SECTIONS if s.curves)
    assert "No outputs yet" not in page and "seed: 0" in page


def test_missing_outputs_are_called_out(tmp_path):
    page, counts = report.build({}, root=tmp_path)
    assert sum(counts.values()) == 0 and page.count("No outputs yet") == len(report.SECTIONS)


def test_report_renders_in_headless_chromium(run_outputs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian package chromium is not installed (`make setup` installs it as root)")
    page, _ = report.build({}, root=run_outputs)
    html_path = tmp_path / "index.html"
    html_path.write_text(page)
    shot = tmp_path / "shot.png"
    url = html_path.as_uri()
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1200,2400", url], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    for section in report.SECTIONS:
        assert f'id="{section.key}"' in dom and section.title.replace("&", "&amp;") in dom
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[:2] == (2400, 1200)
    assert pixels.std() > 20  # the page drew something: header, text, figures, not a blank canvas


def test_a_study_s_models_share_one_table_and_one_curve_figure(run_outputs):
    (run_outputs / "metrics/classifiers/model.json").unlink()  # the fixture's nested file
    for name, acc in (("lenet", 0.91), ("mynet", 0.92)):
        (run_outputs / f"metrics/classifiers/{name}.json").write_text(json.dumps({"test_acc": acc, "params": 10}))
        pd.DataFrame({"epoch": [1, 2], "test_acc": [0.8, acc]}).to_csv(run_outputs / f"plots/classifiers/{name}.csv",
                                                                        index=False)
    page, _ = report.build({}, root=run_outputs)
    section = page[page.index("<section id='classifiers'>"):]
    section = section[:section.index("</section>")]
    assert section.count("<table>") == 2  # the metrics files side by side, then the curves' final epochs
    assert "<td>lenet</td><td>0.91</td><td>10</td>" in section and "<td>mynet</td><td>0.92</td><td>10</td>" in section
    assert section.count("data:image/png;base64,") == 2  # the overlaid curves and the one figure
    assert "curves of lenet, model, mynet" in section


def test_a_declared_figure_the_run_has_not_made_is_shown_missing_with_its_stage(run_outputs):
    shutil.copy(Path(__file__).parents[1] / "dvc.yaml", run_outputs / "dvc.yaml")
    shutil.copy(Path(__file__).parents[1] / "params.yaml", run_outputs / "params.yaml")
    shutil.rmtree(run_outputs / "figures/vae_tradeoff", ignore_errors=True)
    (run_outputs / "figures/vae").mkdir(parents=True, exist_ok=True)
    plotting.image_grid(run_outputs / "figures/vae/samples.png", [np.full((2, 8, 8), 0.5)], ["a"])
    page, _ = report.build({}, root=run_outputs)
    vae = page[page.index("<section id='vae'>"):]
    vae = vae[:vae.index("</section>")]
    assert "figures/vae_tradeoff: missing; <code>dvc repro vae_tradeoff</code> makes it" in vae
    assert "figures/vae: missing" not in vae and "figures/vae/samples.png" in vae


def test_each_output_names_its_stage_and_a_stage_whose_inputs_changed_is_marked_stale(run_outputs):
    """dvc.lock records what each stage ran with: a changed param or input file makes its outputs stale."""
    import hashlib

    repo = Path(__file__).parents[1]
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(repo / name, run_outputs / name)
    (run_outputs / "metrics/vae.json").write_text(json.dumps({"heldout_psnr": 21.9}))
    recorded = hashlib.md5((run_outputs / "metrics/vae.json").read_bytes()).hexdigest()
    lock = {"schema": "2.0", "stages": {
        "train_vae": {"cmd": "python stages/train_vae.py", "params": {"params.yaml": {"vae.kl_weight": 0.5}}},
        "train_vae_sweep@0.5": {"cmd": "python stages/train_vae.py 0.5",  # 1e-05 as DVC writes it: a YAML 1.2 number
                                "params": {"params.yaml": {"vae.sweep_kl_weights": [0.5, 0.05, 1e-05]}}},
        "train_ae_mnist_wide@wide": {"cmd": "python stages/train_ae_mnist.py wide",  # a stage dvc.yaml no longer has
                                     "params": {"params.yaml": {"ae_mnist.variants.wide": {"epochs": 1}}}},
        "vae_tradeoff": {"cmd": "python stages/vae_tradeoff.py",
                         "deps": [{"path": "metrics/vae.json", "md5": recorded, "size": 1}]},
        "report": {"cmd": "python stages/report.py",
                   "deps": [{"path": "metrics/vae.json", "md5": "0" * 32, "size": 1}]}}}
    (run_outputs / "dvc.lock").write_text(yaml.safe_dump(lock).replace("'1e-05'", "1e-05").replace("1.0e-05", "1e-05"))
    page, _ = report.build({}, root=run_outputs)
    assert "train_vae_sweep" not in page.split("</header>")[0] and "train_ae_mnist_wide" not in page
    assert "<b>Stale</b>" in page and "train_vae (params vae.kl_weight changed)" in page
    assert "vae_tradeoff (" not in page and "report (" not in page  # the page's own stage is the one running
    vae = page[page.index("<section id='vae'>"):]
    vae = vae[:vae.index("</section>")]
    assert "(from train_vae: stale, params vae.kl_weight changed)" in vae  # metrics/vae.json's table

    lock["stages"]["train_vae"]["params"]["params.yaml"]["vae.kl_weight"] = 0.02
    del lock["stages"]["report"]
    (run_outputs / "dvc.lock").write_text(json.dumps(lock))
    page, _ = report.build({}, root=run_outputs)
    assert "Every stage is up to date with its inputs" in page and "(from train_vae)" in page
