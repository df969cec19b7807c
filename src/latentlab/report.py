"""One self-contained HTML page with every figure and metric of a run.

The page is assembled from what the stages left in `metrics/`, `plots/` and `figures/`, by glob, so a new figure
appears without touching this module. A study's models sit side by side: one table for its per-model
metrics files, its curves overlaid in one figure. A figure that `dvc.yaml` declares but the run has not
made is shown as missing, with the stage that makes it, so a partial run never passes for a whole one.
Each section names its params (the YAML of its params section) and how to find the MLflow runs that
produced it (their `dvc.stage` tag). Images are embedded as data
URIs: the file can be mailed or opened from anywhere. Nothing of the moment goes in (no times, no run
ids), so the same results always give the same page.
"""

from __future__ import annotations

import base64
import glob
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Section:
    key: str                      # anchor id, also the params section shown
    title: str
    intro: str
    metrics: list[str] = field(default_factory=list)   # globs of metrics JSON files
    figures: list[str] = field(default_factory=list)   # globs of PNG files
    curves: list[str] = field(default_factory=list)    # globs of curve CSV files (shown as tables' last row)
    stage_prefix: str | None = None                   # MLflow runs whose dvc.stage starts with this
    params_keys: tuple[str, ...] = ()


SECTIONS = [
    Section("data", "Data", "What every model sees: the first test images of each prepared dataset, and the "
            "prepared arrays' sizes and checksums.", ["metrics/data.json"], ["figures/data/*.png"],
            params_keys=("prepare",)),
    Section("classifiers", "Fashion-MNIST classifiers", "LeNet-5, MyNet, MyNet-BN and FashionNet on Fashion-MNIST "
            "upsampled to 32x32: per-epoch curves, test accuracy and confusion matrices.",
            ["metrics/classifiers/*.json", "metrics/classifiers.json"], ["figures/classifiers/*.png"],
            ["plots/classifiers/*.csv"], "train_classifier", ("classifiers",)),
    Section("numpy_mlp", "NumPy MLP from scratch", "A [784, 512, 128, 10] ReLU network with our own layers, "
            "backprop, SGD, learning-rate decay and L2.", ["metrics/numpy_mlp.json"],
            ["figures/numpy_mlp/*.png"], ["plots/numpy_mlp.csv"], "train_numpy_mlp",
            ("numpy_mlp",)),
    Section("embeddings", "Looking inside: activations, PCA and t-SNE", "Activations of named layers for a "
            "class-balanced test sample, reduced to 2-D and 3-D by PCA and t-SNE, ours and scikit-learn's; "
            "5-NN accuracy per layer measures how well each layer separates the classes.",
            ["metrics/embeddings.json"], ["figures/embeddings/*.png"],
            ["plots/embeddings/*.csv"], "reduce", ("extract", "reduce")),
    Section("vae", "VAE on faces", "A VAE on LFW faces at 32x32: reconstructions of held-out faces, latent "
            "interpolations between chosen pairs, and samples two ways, from the prior N(0, I) and from a "
            "Gaussian mixture fitted to the training faces' codes, each scored by its Fréchet distance (FD) to "
            "the held-out faces in the space of the training faces' principal components; then held-out PSNR "
            "against FD across KL weights β.", ["metrics/vae.json", "metrics/vae_sweep/*.json"],
            ["figures/vae/*.png", "figures/vae_tradeoff/*.png"], ["plots/vae/*.csv"], "train_vae", ("vae",)),
    Section("ae_mnist", "Autoencoders on MNIST", "2-D bottleneck, denoising, L2 and a wide bottleneck: "
            "reconstructions, latent scatters and the decoder over a latent grid.",
            ["metrics/ae_mnist/*.json", "metrics/ae_mnist.json"], ["figures/ae_mnist/*/*.png", "figures/ae_mnist/*.png"],
            ["plots/ae_mnist/*.csv"], "train_ae_mnist", ("ae_mnist",)),
    Section("ae_dogs", "Autoencoders on dog photos", "A conv autoencoder with an 8x8x16 latent on 64x64 dogs; "
            "latent sampling and noise; noise-regularised training and PSNR versus noise.",
            ["metrics/ae_dogs/*.json", "metrics/ae_dogs.json", "metrics/psnr.json"],
            ["figures/ae_dogs/*.png", "figures/psnr/*.png"],
            ["plots/ae_dogs/*.csv", "plots/psnr/*.csv"], "train_ae_dogs", ("ae_dogs",)),
    Section("tsne_full", "t-SNE of all 70,000 Fashion-MNIST images", "Our t-SNE (FFT-interpolated repulsion) "
            "of every training and test image: FashionNet's penultimate layer beside the raw pixels, both "
            "reduced to 50 principal components first; each map's 5-NN accuracy over all points and its exact "
            "KL divergence.", ["metrics/tsne_full.json"], ["figures/tsne_full/*.png"], [], "tsne_full",
            ("tsne_full",)),
]

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:18px 32px}header h1{margin:0;font-size:26px}
nav{padding:8px 32px;background:#e9edf3;position:sticky;top:0}nav a{margin-right:14px;color:#1d3557}
section{background:#fff;margin:18px 32px;padding:10px 24px 20px;border-radius:8px;box-shadow:0 1px 3px #0002}
h2{color:#1d3557}table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #d8dde5;padding:3px 8px;text-align:right}th{background:#eef1f6}
td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:8px;vertical-align:top}
figure.missing{border:2px dashed #c0392b;padding:24px;color:#c0392b}
figure img{max-width:100%;border:1px solid #e3e6ea}figcaption{font-size:12px;color:#555}
details{margin:6px 0}pre{background:#f3f4f6;padding:8px;font-size:12px;overflow:auto}
.meta{font-size:12px;color:#555}.missing{color:#a33}
"""


def _expand(patterns: list[str], root: Path) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        for match in sorted(glob.glob(str(root / pattern))):
            path = Path(match)
            if path not in found:
                found.append(path)
    return found


def _flatten(data, prefix="") -> dict[str, object]:
    flat = {}
    if isinstance(data, dict):
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(data, (int, float, str, bool)):
        flat[prefix.rstrip(".")] = data
    return flat


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def rows_table(rows: dict[str, dict], corner: str) -> str:
    """{row: {column: value}} as an HTML table, a row per key, the columns in first-seen order."""
    columns = list(dict.fromkeys(c for r in rows.values() for c in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_format(r.get(c, ''))}</td>"
                   for c in columns) + "</tr>" for name, r in rows.items())
    return f"<table><tr><th>{corner}</th>{head}</tr>{body}</table>"


def metrics_table(path: Path, root: Path) -> str:
    """A JSON of {row: {column: value}} becomes a table; anything flatter becomes key/value rows."""
    data = json.loads(path.read_text())
    rows = {k: _flatten(v) for k, v in data.items()} if isinstance(data, dict) else {}
    nested = rows and all(isinstance(v, dict) and v for v in data.values())
    title = f"<p class='meta'>{html.escape(str(path.relative_to(root)))}</p>"
    if nested and len(dict.fromkeys(c for r in rows.values() for c in r)) <= 14:
        return title + rows_table(rows, "")
    flat = _flatten(data)
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_format(v)}</td></tr>" for k, v in flat.items())
    return f"{title}<table><tr><th>metric</th><th>value</th></tr>{body}</table>"


def comparison_table(files: dict[Path, dict], root: Path) -> str:
    """Per-model metrics files of one glob (metrics/classifiers/*.json) as one table, a row per model."""
    where = html.escape(str(next(iter(files)).parent.relative_to(root)))
    return (f"<p class='meta'>{where}/: one row per model</p>"
            + rows_table({p.stem: _flatten(data) for p, data in files.items()}, "model"))


def _metric_tables(patterns: list[str], root: Path) -> list[str]:
    """A glob with several flat per-model files gives one comparison table; any other file its own table."""
    tables, seen = [], set()
    for pattern in patterns:
        paths = [p for p in _expand([pattern], root) if p not in seen]
        seen.update(paths)
        loaded = {p: json.loads(p.read_text()) for p in paths}
        flat = {p: data for p, data in loaded.items() if not any(isinstance(v, dict) for v in data.values())}
        if "*" in pattern and len(flat) > 1:
            tables.append(comparison_table(flat, root))
            paths = [p for p in paths if p not in flat]
        tables += [metrics_table(p, root) for p in paths]
    return tables


def _scalar(value):
    return value.item() if hasattr(value, "item") else value


def curves_table(paths: list[Path], root: Path) -> str:
    """The last row (final epoch) of each curve CSV, a row per model: the numbers behind the overlaid plot."""
    import pandas as pd

    frames = {p.stem: pd.read_csv(p) for p in paths}
    frames = {k: f for k, f in frames.items() if not f.empty}
    if not frames:
        return ""
    where = html.escape(", ".join(sorted({str(p.parent.relative_to(root)) for p in paths})))
    last = {k: {c: _scalar(v) for c, v in f.iloc[-1].items()} for k, f in frames.items()}
    return f"<p class='meta'>{where}: the final epoch of each curve</p>" + rows_table(last, "curve")


def _img(png: bytes, name: str) -> str:
    data = base64.b64encode(png).decode()
    name = html.escape(name)
    return f"<figure><img src='data:image/png;base64,{data}' alt='{name}'><figcaption>{name}</figcaption></figure>"


def figure(path: Path, root: Path) -> str:
    return _img(path.read_bytes(), str(path.relative_to(root)))


def overlaid_curves(paths: list[Path], root: Path) -> str:
    """A study's curves in one figure, a panel per metric: test solid, train dashed, a colour per model."""
    import io

    import pandas as pd

    from . import plotting

    frames = {p.stem: pd.read_csv(p) for p in paths}
    frames = {k: f for k, f in frames.items() if "epoch" in f and not f.empty}
    metrics = list(dict.fromkeys(m for f in frames.values() for m in plotting.curve_metrics(f)))
    if not metrics:
        return ""
    fig, axes = plotting.plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.6), squeeze=False)
    colours = plotting.plt.get_cmap("tab10")
    for ax, metric in zip(axes[0], metrics):
        for i, (name, frame) in enumerate(frames.items()):
            for split, style in (("test", "-"), ("train", "--")):
                if f"{split}_{metric}" in frame:
                    ax.plot(frame["epoch"], frame[f"{split}_{metric}"], style, color=colours(i % 10),
                            label=f"{name} {split}", lw=1.4)
        ax.set_xlabel("epoch"), ax.set_ylabel(metric), ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plotting.plt.close(fig)
    names = ", ".join(frames)
    return _img(buf.getvalue(), f"curves of {names} (test solid, train dashed)")


def declared_figures(root: Path) -> dict[str, str]:
    """Every figure or figure folder that dvc.yaml says a stage writes, with that stage's name."""
    from .stage import outputs_by_stage

    if not (root / "dvc.yaml").exists():
        return {}
    return {out: name for name, outs in outputs_by_stage(root / "dvc.yaml").items() for out in outs
            if out.startswith("figures/")}


def missing_figures(section: Section, declared: dict[str, str], root: Path) -> list[str]:
    """This section's declared figures that the run has not made, each with the stage that makes it."""
    import fnmatch

    return [f"<figure class='missing'><figcaption>{html.escape(out)}: missing; "
            f"<code>dvc repro {html.escape(stage)}</code> makes it</figcaption></figure>"
            for out, stage in declared.items()
            if any(fnmatch.fnmatch(out, pattern) or fnmatch.fnmatch(out, os.path.dirname(pattern))
                   for pattern in section.figures) and not (root / out).exists()]


def render_section(section: Section, params: dict, root: Path, declared: dict[str, str] | None = None) -> str:
    parts = [f"<section id='{section.key}'><h2>{html.escape(section.title)}</h2><p>{html.escape(section.intro)}</p>"]
    chosen = {k: params[k] for k in section.params_keys if k in params}
    if chosen:
        parts.append("<details><summary>params</summary><pre>" +
                     html.escape(yaml.safe_dump(chosen, sort_keys=False)) + "</pre></details>")
    if section.stage_prefix:  # a search, not run ids: the page stays the same bytes for the same results
        parts.append(f"<p class='runs'>MLflow: the runs whose <code>dvc.stage</code> tag starts with "
                     f"<code>{html.escape(section.stage_prefix)}</code> (<code>mlflow ui</code>, search "
                     f"<code>tags.`dvc.stage` LIKE '{html.escape(section.stage_prefix)}%'</code>)</p>")
    tables = _metric_tables(section.metrics, root)
    curves = _expand(section.curves, root)
    figures = _expand(section.figures, root)
    parts += tables
    if curves:
        parts += [curves_table(curves, root), overlaid_curves(curves, root)]
    parts += [figure(p, root) for p in figures]
    parts += missing_figures(section, declared or {}, root)
    if not (tables or figures or curves):
        parts.append("<p class='missing'>No outputs yet: run `dvc repro` for this section's stages.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def build(params: dict, root: Path = Path(".")) -> tuple[str, dict[str, int]]:
    """The page's HTML and, per section, how many figures it holds."""
    counts = {s.key: len(_expand(s.figures, root)) for s in SECTIONS}
    nav = "".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in SECTIONS)
    declared = declared_figures(root)
    body = "\n".join(render_section(s, params, root, declared) for s in SECTIONS)
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>latentlab report</title>"
            f"<style>{STYLE}</style></head><body><header><h1>latentlab report</h1>"
            f"<div>Every figure and metric of this run of the pipeline.</div></header><nav>{nav}</nav>"
            f"{body}</body></html>")
    return page, counts
