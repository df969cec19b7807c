"""One self-contained HTML page with every figure and metric of a run, and where each comes from.

The page is assembled from what the stages left in `metrics/`, `plots/` and `figures/`, by glob, so a
new model or figure appears without touching this module. A study's models sit side by side: one table
for its per-model metrics files, its curves overlaid in one figure. Every table and figure names the
stage that wrote it, and a stage whose inputs (params and files, by `dvc.lock`) changed since it ran is
marked stale, so numbers of different runs never pass for one. A figure that `dvc.yaml` declares but
the run has not made is shown as missing, with the stage that makes it. Images are embedded as data
URIs: the file can be mailed or opened from anywhere. Nothing of the moment goes in (no times, no run
ids), so the same results always give the same page.
"""

from __future__ import annotations

import base64
import fnmatch
import glob
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml


@dataclass
class Section:
    key: str                      # anchor id, also the params section shown
    title: str
    intro: str                    # formatted with the params (`{classifier_names}`, `{numpy_mlp[sizes]}`)
    metrics: list[str] = field(default_factory=list)   # globs of metrics JSON files
    figures: list[str] = field(default_factory=list)   # globs of PNG files
    curves: list[str] = field(default_factory=list)    # globs of curve CSV files (shown as tables' last row)
    stage_prefix: str | None = None                   # MLflow runs whose dvc.stage starts with this
    params_keys: tuple[str, ...] = ()


SECTIONS = [
    Section("data", "Data", "What every model sees: the first test images of each prepared dataset, and the "
            "prepared arrays' sizes and checksums.", ["metrics/data.json"], ["figures/data/*.png"],
            params_keys=("prepare",)),
    Section("classifiers", "Fashion-MNIST classifiers", "{classifier_names} on Fashion-MNIST "
            "upsampled to 32x32: per-epoch curves, test accuracy and confusion matrices.",
            ["metrics/classifiers/*.json"], ["figures/classifiers/*.png"],
            ["plots/classifiers/*.csv"], "train_classifier", ("classifiers",)),
    Section("numpy_mlp", "NumPy MLP from scratch", "A {numpy_mlp[sizes]} {numpy_mlp[activation]} network with our own layers, "
            "backprop, SGD, learning-rate decay and L2.", ["metrics/numpy_mlp.json"],
            ["figures/numpy_mlp/*.png"], ["plots/numpy_mlp.csv"], "train_numpy_mlp",
            ("numpy_mlp",)),
    Section("embeddings", "Looking inside: activations, PCA and t-SNE", "Activations of named layers for a "
            "class-balanced test sample, reduced to 2-D and 3-D by PCA and t-SNE: ours for every network, "
            "scikit-learn's too for those of reduce.sklearn_models (the means compare the two on those); "
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
            ["metrics/ae_mnist/*.json"], ["figures/ae_mnist/*/*.png", "figures/ae_mnist/*.png"],
            ["plots/ae_mnist/*.csv"], "train_ae_mnist", ("ae_mnist",)),
    Section("ae_dogs", "Autoencoders on dog photos", "A conv autoencoder with an 8x8x16 latent on 64x64 dogs; "
            "latent sampling and noise; noise-regularised training and PSNR versus noise.",
            ["metrics/ae_dogs/*.json", "metrics/psnr.json"],
            ["figures/ae_dogs/*.png", "figures/psnr/*.png"],
            ["plots/ae_dogs/*.csv", "plots/psnr/*.csv"], "train_ae_dogs", ("ae_dogs",)),
    Section("tsne_full", "t-SNE of all 70,000 Fashion-MNIST images", "Our t-SNE (FFT-interpolated repulsion) "
            "fitted to the 60,000 training images, with the 10,000 test images placed into the fitted map "
            "(`TSNE.transform`): FashionNet's penultimate layer beside the raw pixels, both reduced to 50 principal "
            "components first; each map's 5-NN accuracy for its training points and for the placed test images, "
            "and its exact KL divergence.", ["metrics/tsne_full.json"], ["figures/tsne_full/*.png"], [], "tsne_full",
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

PAGE = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string("""\
<!doctype html><html lang='en'><head><meta charset='utf-8'><title>latentlab report</title>
<style>{{ style }}</style></head><body>
<header><h1>latentlab report</h1><div>Every figure and metric in metrics/, plots/ and figures/, each with the stage
that wrote it.{% if stale %} <b>Stale</b> (inputs changed since the stage ran; <code>dvc repro</code> brings it up to
date): {{ stale | join(', ') }}.{% else %} Every stage is up to date with its inputs.{% endif %}</div></header>
<nav>{% for s in sections %}<a href='#{{ s.key }}'>{{ s.title }}</a>{% endfor %}</nav>
{% for s in sections %}
<section id='{{ s.key }}'><h2>{{ s.title }}</h2><p>{{ s.intro }}</p>
{% if s.params %}<details><summary>params</summary><pre>{{ s.params }}</pre></details>{% endif %}
{% if s.stage_prefix %}<p class='runs'>MLflow: the runs whose <code>dvc.stage</code> tag starts with
<code>{{ s.stage_prefix }}</code> (<code>mlflow ui</code>, search
<code>tags.`dvc.stage` LIKE '{{ s.stage_prefix }}%'</code>)</p>{% endif %}
{% for t in s.tables %}
<p class='meta'>{{ t.caption }} <span class='{{ t.source.css }}'>{{ t.source.text }}</span></p>
<table><tr><th>{{ t.corner }}</th>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for name, values in t.rows %}<tr><td>{{ name }}</td>{% for v in values %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}
{% for f in s.figures %}
<figure><img src='data:image/png;base64,{{ f.data }}' alt='{{ f.name }}'><figcaption>{{ f.name }}
{% if f.source %}<span class='{{ f.source.css }}'>{{ f.source.text }}</span>{% endif %}</figcaption></figure>
{% endfor %}
{% for out, stage in s.missing %}
<figure class='missing'><figcaption>{{ out }}: missing; <code>dvc repro {{ stage }}</code> makes it</figcaption></figure>
{% endfor %}
{% if s.empty %}<p class='missing'>No outputs yet: run `dvc repro` for this section's stages.</p>{% endif %}
</section>
{% endfor %}
</body></html>
""")


class Provenance:
    """Which stage wrote a file (`dvc.yaml`), and which stages are stale: their params or input files
    differ from what `dvc.lock` recorded when they last ran (folders are not re-hashed)."""

    def __init__(self, root: Path):
        stages = outputs_by_stage(root)
        self.writers = {out: name for name, outs in stages.items() for out in outs}
        self.stale = _stale_stages(root, set(stages))
        self.root = root

    def source(self, path: Path) -> dict[str, str] | None:
        relative = path.relative_to(self.root)
        for candidate in (relative, *relative.parents):
            stage = self.writers.get(candidate.as_posix())
            if stage:
                if stage in self.stale:
                    return {"text": f"(from {stage}: stale, {self.stale[stage]})", "css": "missing"}
                return {"text": f"(from {stage})", "css": "meta"}
        return None


def outputs_by_stage(root: Path) -> dict[str, list[str]]:
    """Each stage's outputs (outs, metrics, plots) by its DVC name, as DVC itself resolves `dvc.yaml`."""
    if not (root / "dvc.yaml").exists():
        return {}
    from dvc.repo import Repo

    with Repo(str(root), uninitialized=True) as repo:  # a folder of outputs without `.dvc/` too
        return {stage.name: [str(out.def_path) for out in stage.outs] for stage in repo.index.stages}


def _stale_stages(root: Path, current: set[str]) -> dict[str, str]:
    lock_path, params_path = root / "dvc.lock", root / "params.yaml"
    if not (lock_path.exists() and params_path.exists()):
        return {}
    from latentlab.runtime.params import read_yaml

    lock, params = read_yaml(lock_path) or {}, read_yaml(params_path)  # YAML 1.2, as DVC writes `1e-05`
    hashes: dict[str, str | None] = {}
    stale = {}
    for name, entry in (lock.get("stages") or {}).items():
        if name == "report" or name not in current:  # the running page itself; a stage dvc.yaml no longer has
            continue
        for key, value in ((entry.get("params") or {}).get("params.yaml") or {}).items():
            if _dotted(params, key) != value:
                stale[name] = f"params {key} changed"
                break
        else:
            for dep in entry.get("deps") or []:
                digest = dep.get("md5", "")
                if digest.endswith(".dir"):
                    continue
                if dep["path"] not in hashes:
                    hashes[dep["path"]] = _md5(root / dep["path"])
                if hashes[dep["path"]] != digest:
                    stale[name] = f"{dep['path']} changed"
                    break
    return stale


def _dotted(tree, key: str):
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _md5(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(caption: str, rows: dict[str, dict], corner: str, source) -> dict:
    """{row: {column: value}} as the template's table: a row per key, the columns in first-seen order."""
    columns = list(dict.fromkeys(c for r in rows.values() for c in r))
    return {"caption": caption, "corner": corner, "columns": columns, "source": source or {"text": "", "css": "meta"},
            "rows": [(name, [_format(r.get(c, "")) for c in columns]) for name, r in rows.items()]}


def metrics_tables(patterns: list[str], root: Path, prov: Provenance) -> list[dict]:
    """Several flat per-model files of one glob give one table, a row per model; any other file its own:
    rows of a nested JSON ({row: {column: value}}) when it has few columns, else metric/value rows."""
    tables, seen = [], set()
    for pattern in patterns:
        paths = [p for p in _expand([pattern], root) if p not in seen]
        seen.update(paths)
        loaded = {p: json.loads(p.read_text()) for p in paths}
        flat = {p: d for p, d in loaded.items() if isinstance(d, dict) and not any(isinstance(v, dict) for v in d.values())}
        if "*" in pattern and len(flat) > 1:
            where = next(iter(flat)).parent.relative_to(root)
            tables.append(table(f"{where}/: one row per model", {p.stem: d for p, d in flat.items()}, "model",
                                prov.source(next(iter(flat)))))
            loaded = {p: d for p, d in loaded.items() if p not in flat}
        for path, data in loaded.items():
            rows = {k: _flatten(v) for k, v in data.items()} if isinstance(data, dict) else {}
            caption = str(path.relative_to(root))
            if rows and all(isinstance(v, dict) and v for v in data.values()) \
                    and len(dict.fromkeys(c for r in rows.values() for c in r)) <= 14:
                tables.append(table(caption, rows, "", prov.source(path)))
            else:
                tables.append(table(caption, {k: {"value": v} for k, v in _flatten(data).items()}, "metric",
                                    prov.source(path)))
    return tables


def curves_table(paths: list[Path], root: Path, prov: Provenance) -> list[dict]:
    """The last row (final epoch) of each curve CSV, a row per model: the numbers behind the overlaid plot."""
    import pandas as pd

    frames = {p.stem: pd.read_csv(p) for p in paths}
    last = {k: dict(f.iloc[-1].items()) for k, f in frames.items() if not f.empty}
    if not last:
        return []
    where = ", ".join(sorted({str(p.parent.relative_to(root)) for p in paths}))
    return [table(f"{where}: the final epoch of each curve", last, "curve", prov.source(paths[0]))]


def overlaid_curves(paths: list[Path]) -> dict | None:
    """A study's curves in one figure, a panel per metric: test solid, train dashed, a colour per model."""
    import pandas as pd

    from latentlab.runtime import plotting

    frames = {p.stem: pd.read_csv(p) for p in paths}
    frames = {k: f for k, f in frames.items() if "epoch" in f and not f.empty}
    metrics = list(dict.fromkeys(m for f in frames.values() for m in plotting.curve_metrics(f)))
    if not metrics:
        return None
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
    return {"data": base64.b64encode(buf.getvalue()).decode(), "source": None,
            "name": f"curves of {', '.join(frames)} (test solid, train dashed)"}


def declared_figures(prov: "Provenance") -> dict[str, str]:
    """Every figure or figure folder that dvc.yaml says a stage writes, with that stage's name."""
    return {out: name for out, name in prov.writers.items() if out.startswith("figures/")}


def gather(section: Section, params: dict, root: Path, declared: dict[str, str], prov: Provenance) -> dict:
    """What the page shows of one section: params, tables, figures, and the declared figures still missing."""
    chosen = {k: params[k] for k in section.params_keys if k in params}
    tables = metrics_tables(section.metrics, root, prov)
    curves = _expand(section.curves, root)
    figures = [{"data": base64.b64encode(p.read_bytes()).decode(), "name": str(p.relative_to(root)),
                "source": prov.source(p)} for p in _expand(section.figures, root)]
    if curves:
        tables += curves_table(curves, root, prov)
        figures = [f for f in [overlaid_curves(curves)] if f] + figures
    missing = [(out, stage) for out, stage in declared.items()
               if any(fnmatch.fnmatch(out, pattern) or fnmatch.fnmatch(out, os.path.dirname(pattern))
                      for pattern in section.figures) and not (root / out).exists()]
    return {"key": section.key, "title": section.title, "intro": intro(section, params), "stage_prefix": section.stage_prefix,
            "params": yaml.safe_dump(chosen, sort_keys=False) if chosen else "", "tables": tables,
            "figures": figures, "missing": missing, "empty": not (tables or figures or curves),
            "count": len(_expand(section.figures, root))}


def intro(section: Section, params: dict) -> str:
    """A section's text with what the params say filled in, so it stays true when a model is added."""
    names = ", ".join(params.get("classifiers") or {}) or "no models"
    try:
        return section.intro.format(classifier_names=names, **params)
    except (KeyError, IndexError, TypeError):  # a params file without that section: the text as written
        return section.intro


def build(params: dict, root: Path = Path(".")) -> tuple[str, dict[str, int]]:
    """The page's HTML and, per section, how many figures it holds."""
    prov = Provenance(root)
    declared = declared_figures(prov)
    sections = [gather(s, params, root, declared, prov) for s in SECTIONS]
    page = PAGE.render(style=STYLE, sections=sections, stale=[f"{k} ({v})" for k, v in sorted(prov.stale.items())])
    return page, {s["key"]: s["count"] for s in sections}
