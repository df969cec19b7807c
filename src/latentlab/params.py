"""`params.yaml`, loaded and checked before a stage does any work.

Each section of the file has a schema in `SCHEMA`. Validation walks the whole file at the start of
every stage, so a typo anywhere (`vae.kl_wieght`) fails fast with one line naming the key and what is
allowed, instead of being silently ignored or failing an hour in.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import LatentlabError


class Spec:
    """One leaf of the schema: checks a value and returns it (possibly normalised)."""

    def check(self, key: str, value: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def fail(self, key: str, value: Any, allowed: str) -> None:
        raise LatentlabError(f"params.yaml: {key} = {value!r} is invalid; allowed: {allowed}")


@dataclass
class Num(Spec):
    """An int or float within [lo, hi]; `lo_open`/`hi_open` exclude the bound."""

    kind: type = float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        name = "an integer" if self.kind is int else "a number"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi}")
        return name + (" " + " and ".join(parts) if parts else "")

    def check(self, key, value):
        ok_type = isinstance(value, int) if self.kind is int else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
            self.fail(key, value, self.describe())
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            self.fail(key, value, self.describe())
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            self.fail(key, value, self.describe())
        return self.kind(value)


def Int(lo=None, hi=None) -> Num:
    return Num(int, lo, hi)


def Float(lo=None, hi=None, lo_open=False, hi_open=False) -> Num:
    return Num(float, lo, hi, lo_open, hi_open)


@dataclass
class Choice(Spec):
    values: tuple

    def check(self, key, value):
        if not any(type(value) is type(v) and value == v for v in self.values):  # so True never passes for 1
            self.fail(key, value, "one of " + ", ".join(map(str, self.values)))
        return value


def Bool() -> Choice:
    return Choice((True, False))


@dataclass
class Str(Spec):
    def check(self, key, value):
        if not isinstance(value, str) or not value:
            self.fail(key, value, "a non-empty string")
        return value


@dataclass
class PairsOrAuto(Spec):
    """`auto`, or a list of [i, j] pairs of non-negative indices (checked against the data by the stage)."""

    def check(self, key, value):
        if value == "auto":
            return value
        if not isinstance(value, list) or not value:
            self.fail(key, value, "'auto' or a list of [i, j] index pairs")
        for i, pair in enumerate(value):
            if not (isinstance(pair, list) and len(pair) == 2):
                self.fail(f"{key}[{i}]", pair, "a pair [i, j] of face indices")
            for j, index in enumerate(pair):
                Int(0).check(f"{key}[{i}][{j}]", index)
        return value


@dataclass
class List(Spec):
    """A list whose items all match `item`, with a length in [min_len, max_len]."""

    item: Any
    min_len: int = 0
    max_len: int | None = None

    def check(self, key, value):
        if not isinstance(value, list) or len(value) < self.min_len or (
            self.max_len is not None and len(value) > self.max_len
        ):
            size = f"{self.min_len}..{self.max_len if self.max_len is not None else 'n'}"
            self.fail(key, value, f"a list of {size} items")
        return [_check(f"{key}[{i}]", self.item, v) for i, v in enumerate(value)]


@dataclass
class Each(Spec):
    """A mapping whose keys are free (e.g. model names) and whose values all match `schema`."""

    schema: Any
    keys: tuple | None = None

    def check(self, key, value):
        if not isinstance(value, dict) or not value:
            self.fail(key, value, "a non-empty mapping")
        if self.keys is not None:
            for k in value:
                if k not in self.keys:
                    _unknown(f"{key}.{k}", k, self.keys)
        return {k: _check(f"{key}.{k}", self.schema, v) for k, v in value.items()}


@dataclass
class Overrides(Spec):
    """Some keys of `schema`, each checked by it: a block that overrides a defaults block."""

    schema: dict

    def check(self, key, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, value, f"a mapping of some of {', '.join(self.schema)}")
        for k in value:
            if k not in self.schema:
                _unknown(f"{key}.{k}", k, self.schema)
        return {k: (Overrides(self.schema[k]) if isinstance(self.schema[k], dict) else self.schema[k])
                .check(f"{key}.{k}", v) for k, v in value.items()}


def merged(defaults: dict, overrides: dict) -> dict:
    """`defaults` with `overrides` laid over it, nested mappings key by key."""
    out = dict(defaults)
    for k, v in overrides.items():
        out[k] = merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
    return out


def _unknown(full_key: str, key: str, allowed) -> None:
    close = difflib.get_close_matches(str(key), list(map(str, allowed)), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise LatentlabError(
        f"params.yaml: unknown key '{full_key}'{hint}; allowed here: {', '.join(map(str, allowed))}"
    )


def _check(key: str, schema: Any, value: Any) -> Any:
    if isinstance(schema, Spec):
        return schema.check(key, value)
    if not isinstance(value, dict):
        raise LatentlabError(f"params.yaml: {key} must be a mapping with keys {', '.join(schema)}")
    for k in value:
        if k not in schema:
            _unknown(f"{key}.{k}" if key else str(k), k, schema)
    missing = [k for k in schema if k not in value]
    if missing:
        name = f"{key}.{missing[0]}" if key else missing[0]
        raise LatentlabError(f"params.yaml: missing key '{name}'; add it (see the README's params table)")
    return {k: _check(f"{key}.{k}" if key else k, schema[k], v) for k, v in value.items()}


DEVICE = Choice(("auto", "cpu", "cuda", "mps"))
AMP = Choice(("auto", True, False))  # auto: bf16 autocast on CUDA and on CPUs with native bf16
TORCH_ACTIVATION = Choice(("relu", "silu"))  # the keys of models.autoencoders.ACTIVATIONS; params.py stays torch-free

CLASSIFIER = {
    "epochs": Int(1, 500),
    "batch_size": Int(1, 65536),
    "optimizer": Choice(("sgd", "adamw")),
    "lr": Float(0, 10, lo_open=True),
    "momentum": Float(0, 1, hi_open=True),
    "weight_decay": Float(0, 1),
    "schedule": Choice(("cosine", "step", "none")),
    "label_smoothing": Float(0, 1, hi_open=True),
    "augment": {"crop_padding": Int(0, 8), "hflip": Bool()},
    "seed": Int(0),
}
AE_MNIST = {
    "bottleneck": Int(1, 784),
    "hidden": List(Int(1, 10000), min_len=1, max_len=6),
    "activation": TORCH_ACTIVATION,
    "amp": AMP,
    "epochs": Int(1, 1000),
    "batch_size": Int(1, 60000),
    "lr": Float(0, 1, lo_open=True),
    "weight_decay": Float(0, 1),
    "noise_factor": Float(0, 10),
    "seed": Int(0),
}

# One entry per top-level section of params.yaml. Each feature owns its section.
SCHEMA: dict[str, Any] = {
    "device": DEVICE,
    "fetch": {
        "timeout_s": Float(0, lo_open=True),
    },
    "prepare": {
        "dogs": {
            "test_fraction": Float(0, 1, lo_open=True, hi_open=True),
            "seed": Int(0),
        },
    },
    "classifier_defaults": CLASSIFIER,
    "classifiers": Each(Overrides(CLASSIFIER)),
    "numpy_mlp": {
        "sizes": List(Int(1, 100000), min_len=2, max_len=10),
        "activation": Choice(("relu", "sigmoid", "tanh")),
        "epochs": Int(1, 1000),
        "batch_size": Int(1, 60000),
        "lr": Float(0, 10, lo_open=True),
        "scheduler": Choice(("exponential", "step", "none")),
        "decay": Float(0, 10),
        "momentum": Float(0, 1, hi_open=True),
        "weight_decay": Float(0, 1),
        "dtype": Choice(("float32", "float64")),
        "seed": Int(0),
    },
    "extract": {
        "per_class": Int(15, 1000),
        "seed": Int(0),
        "models": Each({"weights": Str(), "layers": List(Str(), min_len=1, max_len=10)}),
    },
    "reduce": {
        "dims": List(Choice((2, 3)), min_len=1, max_len=2),
        "perplexity": Float(1, lo_open=False),
        "tsne_iter": Int(250, 10000),
        "tsne_pca_dims": Int(0, 10000),
        "seed": Int(0),
    },
    "vae": {
        "dataset": Choice(("lfw4151", "lfw_simplified")),
        "arch": Choice(("conv", "mlp")),
        "latent_dim": Int(1, 4096),
        "width": Int(1, 4096),
        "kl_weight": Float(0, 1000),
        "recon_loss": Choice(("mse", "bce")),
        "epochs": Int(1, 10000),
        "min_steps": Int(0, 10_000_000),
        "lr": Float(0, 1, lo_open=True),
        "batch_size": Int(1, 10000),
        "holdout_fraction": Float(0, 1, lo_open=True, hi_open=True),
        "seed": Int(0),
        "pairs": PairsOrAuto(),
        "auto_pairs": Int(1, 20),
        "alphas": List(Float(0, 1), min_len=2, max_len=50),
        "samples": {"gmm_components": Int(1, 100), "feature_dims": Int(2, 1024)},
        "sweep_kl_weights": List(Float(0, 1000), min_len=0, max_len=20),
    },
    "ae_mnist": {
        "defaults": AE_MNIST,
        "variants": Each(Overrides(AE_MNIST)),
        "latent_grid": {"low": Float(), "high": Float(), "size": Int(2, 64)},
    },
    "ae_dogs": {
        "widths": List(Int(1, 1024), min_len=3, max_len=3),
        "activation": TORCH_ACTIVATION,
        "batch_norm": Bool(),
        "batch_size": Int(1, 4096),
        "amp": AMP,
        "seed": Int(0),
        "base": {"epochs": Int(1, 1000), "lr": Float(0, 1, lo_open=True), "normalize": Bool()},
        "noisy": {"epochs": Int(1, 1000), "lr": Float(0, 1, lo_open=True), "warm_start": Bool()},
        "noise_std": List(Float(0, 10, lo_open=True), min_len=1, max_len=20),
        "latent": {"n_show": Int(1, 64), "n_fit": Int(2, 1481), "blend": Float(0, 1), "code_noise": Float(0, 100)},
    },
    "tsne_full": {
        "layer": Str(),  # checked against FashionNet's layers by the stage (this module stays torch-free)
        "pca_dims": Int(0, 784),
        "perplexity": Float(1),
        "iterations": Int(250, 10000),
        "method": Choice(("auto", "exact", "fft")),
        "seed": Int(0),
    },
}


def validate(params: dict) -> dict:
    """Check every section of params against SCHEMA; return the checked copy."""
    if not isinstance(params, dict):
        raise LatentlabError("params.yaml: the file must be a mapping of sections (fetch:, prepare:, ...)")
    checked = _check("", SCHEMA, params)
    checked["classifiers"] = {k: merged(checked["classifier_defaults"], v) for k, v in checked["classifiers"].items()}
    mnist = checked["ae_mnist"]
    mnist["variants"] = {k: merged(mnist["defaults"], v) for k, v in mnist["variants"].items()}
    _check_across(checked)
    return checked


def _check_across(p: dict) -> None:
    """Rules that tie one key to another, checked with the rest before any stage starts."""
    sizes = p["numpy_mlp"]["sizes"]
    if sizes[0] != 784 or sizes[-1] != 10:
        raise LatentlabError(f"params.yaml: numpy_mlp.sizes = {sizes} is invalid; allowed: "
                             "[784, ..., 10] (28x28 inputs, 10 classes)")
    n = p["extract"]["per_class"] * 10  # the class-balanced sample of the 10 classes
    if p["reduce"]["perplexity"] >= n:
        raise LatentlabError(f"params.yaml: reduce.perplexity = {p['reduce']['perplexity']} is out of range; "
                             f"allowed: below the number of samples ({n} = 10 x extract.per_class)")
    grid = p["ae_mnist"]["latent_grid"]
    if grid["low"] >= grid["high"]:
        raise LatentlabError(f"params.yaml: ae_mnist.latent_grid.low = {grid['low']} must be below "
                             f"ae_mnist.latent_grid.high = {grid['high']}")


class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats: `dvc exp run -S beta=0.00001` writes `1e-05`, which YAML 1.1 reads as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load(path: str | Path = "params.yaml") -> dict:
    """Read and validate params.yaml; any problem is one LatentlabError line."""
    path = Path(path)
    if not path.is_file():
        raise LatentlabError(f"{path}: not found; run the stage from the repository root")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise LatentlabError(f"{path}: not valid YAML {_yaml_problem(exc)}; fix the syntax") from None
    return validate(raw)


def _yaml_problem(exc) -> str:
    """Where the broken construct starts (an unclosed `[` is found lines later) and why it is broken."""
    start, found = getattr(exc, "context_mark", None), getattr(exc, "problem_mark", None)
    line = (start or found).line + 1 if (start or found) else None
    reason = ", ".join(part for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part)
    where = f"at line {line}" if line else ""
    if start and found and found.line != start.line:
        reason += f" (noticed at line {found.line + 1})"
    return f"{where}: {reason}" if reason else where
