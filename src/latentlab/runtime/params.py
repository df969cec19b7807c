"""`params.yaml`, loaded and checked before a stage does any work.

The file's schema is `Params`: strict pydantic models, one per section, that forbid unknown keys.
Validation walks the whole file at the start of every stage, so a typo anywhere (`vae.kl_wieght`)
fails fast with one line naming the key and what is allowed, instead of being silently ignored or
failing an hour in. Stages get plain dicts: the models are the schema, not an API.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from latentlab.runtime.errors import LatentlabError


def Int(lo: int | None = None, hi: int | None = None) -> Any:
    return Annotated[int, Field(ge=lo, le=hi)]


def Float(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Any:
    return Annotated[float, Field(allow_inf_nan=False, **{"gt" if lo_open else "ge": lo, "lt" if hi_open else "le": hi})]


def List(item: Any, min_len: int = 0, max_len: int | None = None) -> Any:
    return Annotated[list[item], Field(min_length=min_len, max_length=max_len)]


Name = Annotated[str, Field(min_length=1)]
Amp = Annotated[Union[Literal["auto"], bool], Field(description="one of auto, True, False")]
TorchActivation = Literal["relu", "silu"]  # the keys of models.mlp_autoencoder.ACTIVATIONS; this module stays torch-free


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Fetch(Section):
    timeout_s: Float(0, lo_open=True)


class DogSplit(Section):
    test_fraction: Float(0, 1, lo_open=True, hi_open=True)
    seed: Int(0)


class Prepare(Section):
    dogs: DogSplit


class Augment(Section):
    crop_padding: Int(0, 8)
    hflip: bool


class Classifier(Section):
    epochs: Int(1, 500)
    batch_size: Int(1, 65536)
    optimizer: Literal["sgd", "adamw"]
    lr: Float(0, 10, lo_open=True)
    momentum: Float(0, 1, hi_open=True)
    weight_decay: Float(0, 1)
    schedule: Literal["cosine", "warmup_cosine", "step", "none"]
    warmup_epochs: Float(0, 500)
    label_smoothing: Float(0, 1, hi_open=True)
    augment: Augment
    amp: Amp
    seed: Int(0)


class NumpyMLP(Section):
    sizes: List(Int(1, 100000), min_len=2, max_len=10)
    activation: Literal["relu", "sigmoid", "tanh"]
    epochs: Int(1, 1000)
    batch_size: Int(1, 60000)
    lr: Float(0, 10, lo_open=True)
    scheduler: Literal["exponential", "step", "none"]
    decay: Float(0, 10)
    momentum: Float(0, 1, hi_open=True)
    weight_decay: Float(0, 1)
    dtype: Literal["float32", "float64"]
    seed: Int(0)


class LookedInside(Section):
    weights: Name
    layers: List(Name, min_len=1, max_len=10)  # checked against the model's layers by the extract stage


class Extract(Section):
    per_class: Int(15, 1000)
    seed: Int(0)
    models: dict[str, LookedInside]


class Reduce(Section):
    dims: List(Literal[2, 3], min_len=1, max_len=2)
    perplexity: Float(1)
    tsne_iter: Int(250, 10000)
    tsne_pca_dims: Int(0, 10000)
    sklearn_models: list[str]
    seed: Int(0)


class Samples(Section):
    gmm_components: Int(1, 100)
    feature_dims: Int(2, 1024)


Pair = Annotated[list[Int(0)], Field(min_length=2, max_length=2)]


class VAE(Section):
    dataset: Literal["lfw4151", "lfw_simplified"]
    arch: Literal["conv", "mlp"]
    latent_dim: Int(1, 4096)
    width: Int(1, 4096)
    kl_weight: Float(0, 1000)
    recon_loss: Literal["mse", "bce"]
    epochs: Int(1, 10000)
    min_steps: Int(0, 10_000_000)
    lr: Float(0, 1, lo_open=True)
    batch_size: Int(1, 10000)
    holdout_fraction: Float(0, 1, lo_open=True, hi_open=True)
    amp: Amp
    seed: Int(0)
    pairs: Annotated[Union[Literal["auto"], Annotated[list[Pair], Field(min_length=1)]],
                     Field(description="'auto' or a list of [i, j] face-index pairs")]
    auto_pairs: Int(1, 20)
    alphas: List(Float(0, 1), min_len=2, max_len=50)
    samples: Samples
    sweep_kl_weights: List(Float(0, 1000), min_len=0, max_len=20)


class AEVariant(Section):
    bottleneck: Int(1, 784)
    hidden: List(Int(1, 10000), min_len=1, max_len=6)
    activation: TorchActivation
    epochs: Int(1, 1000)
    batch_size: Int(1, 60000)
    lr: Float(0, 1, lo_open=True)
    weight_decay: Float(0, 1)
    noise_factor: Float(0, 10)
    amp: Amp
    seed: Int(0)


class LatentGrid(Section):
    low: Float()
    high: Float()
    size: Int(2, 64)


class AEMnist(Section):
    defaults: AEVariant
    variants: dict[str, AEVariant]  # each laid over `defaults` before it is checked
    latent_grid: LatentGrid


class DogTraining(Section):
    epochs: Int(1, 1000)
    lr: Float(0, 1, lo_open=True)
    warmup_epochs: Float(0, 1000)


class DogBase(DogTraining):
    normalize: bool


class DogNoisy(DogTraining):
    warm_start: bool


class DogLatent(Section):
    n_show: Int(1, 64)
    n_fit: Int(2, 1481)
    blend: Float(0, 1)
    code_noise: Float(0, 100)


class AEDogs(Section):
    widths: List(Int(1, 1024), min_len=3, max_len=3)
    activation: TorchActivation
    batch_norm: bool
    batch_size: Int(1, 4096)
    amp: Amp
    seed: Int(0)
    base: DogBase
    noisy: DogNoisy
    noise_std: List(Float(0, 10, lo_open=True), min_len=1, max_len=20)
    latent: DogLatent


class TsneFull(Section):
    layer: Name  # checked against FashionNet's layers by the stage (this module stays torch-free)
    pca_dims: Int(0, 784)
    perplexity: Float(1)
    iterations: Int(250, 10000)
    method: Literal["auto", "exact", "fft"]
    seed: Int(0)


class Params(Section):
    device: Literal["auto", "cpu", "cuda", "mps"]
    threads: Int(1, 256)
    fetch: Fetch
    prepare: Prepare
    classifier_defaults: Classifier
    classifiers: dict[str, Classifier]  # each laid over `classifier_defaults` before it is checked
    numpy_mlp: NumpyMLP
    extract: Extract
    reduce: Reduce
    vae: VAE
    ae_mnist: AEMnist
    ae_dogs: AEDogs
    tsne_full: TsneFull

    @model_validator(mode="before")
    @classmethod
    def _lay_over_defaults(cls, raw: Any) -> Any:
        """A model's block names only what differs from the defaults, so a new model is a short block."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if isinstance(raw.get("classifiers"), dict):
            raw["classifiers"] = _lay_over(raw.get("classifier_defaults"), raw["classifiers"])
        mnist = raw.get("ae_mnist")
        if isinstance(mnist, dict) and isinstance(mnist.get("variants"), dict):
            raw["ae_mnist"] = {**mnist, "variants": _lay_over(mnist.get("defaults"), mnist["variants"])}
        return raw

    @model_validator(mode="after")
    def _check_across(self) -> Params:
        """Rules that tie one key to another."""
        sizes = self.numpy_mlp.sizes
        if sizes[0] != 784 or sizes[-1] != 10:
            raise _Refused(f"numpy_mlp.sizes = {sizes} is invalid; allowed: [784, ..., 10] (28x28 inputs, 10 classes)")
        n = self.extract.per_class * 10  # the class-balanced sample of the 10 classes
        if self.reduce.perplexity >= n:
            raise _Refused(f"reduce.perplexity = {self.reduce.perplexity} is out of range; allowed: below the "
                           f"number of samples ({n} = 10 x extract.per_class)")
        unknown = [m for m in self.reduce.sklearn_models if m not in self.extract.models]
        if unknown:
            raise _Refused(f"reduce.sklearn_models: {unknown[0]!r} is not a network extract.models looks inside; "
                           f"allowed: {', '.join(self.extract.models)}")
        grid = self.ae_mnist.latent_grid
        if grid.low >= grid.high:
            raise _Refused(f"ae_mnist.latent_grid.low = {grid.low} must be below ae_mnist.latent_grid.high = {grid.high}")
        return self


class _Refused(ValueError):
    """A cross-key rule's complete message, passed through pydantic unchanged."""


def _lay_over(defaults: Any, blocks: dict) -> dict:
    if not isinstance(defaults, dict):
        return blocks
    return {name: merged(defaults, block or {}) if isinstance(block or {}, dict) else block
            for name, block in blocks.items()}


def merged(defaults: dict, overrides: dict) -> dict:
    """`defaults` with `overrides` laid over it, nested mappings key by key."""
    out = dict(defaults)
    for k, v in overrides.items():
        out[k] = merged(defaults[k], v) if isinstance(v, dict) and isinstance(defaults.get(k), dict) else v
    return out


def validate(params: Any) -> dict:
    """Check the whole file against `Params`; return it as plain dicts, defaults laid over each model."""
    if not isinstance(params, dict):
        raise LatentlabError("params.yaml: the file must be a mapping of sections (fetch:, prepare:, ...)")
    try:
        return Params.model_validate(params).model_dump()
    except ValidationError as exc:
        raise LatentlabError(f"params.yaml: {_first_problem(exc, params)}") from None


def _first_problem(exc: ValidationError, raw: dict) -> str:
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a misspelt key is also a missing one
    if isinstance((error.get("ctx") or {}).get("error"), _Refused):
        return str(error["ctx"]["error"])
    loc = list(error["loc"])
    annotation, path, parent, value = Params, [], None, error.get("input")
    for part in loc:
        base, _ = _unwrap(annotation)
        if _is_union(base):  # the branch names pydantic adds say nothing to a user: the key and its description do
            value = lookup(raw, path)
            break
        parent, path = base, path + [part]
        if isinstance(part, int):
            annotation = typing.get_args(base)[0]
        elif isinstance(base, type) and issubclass(base, BaseModel):
            field = base.model_fields.get(part)
            annotation = _field_annotation(field) if field is not None else Any
        elif typing.get_origin(base) is dict:
            annotation = typing.get_args(base)[1]
    key = _dotted(path)
    if error["type"] == "extra_forbidden":
        allowed = list(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown key '{key}'{hint}; allowed here: {', '.join(allowed)}"
    if error["type"] == "missing":
        return f"missing key '{key}'; add it (see the README's params table)"
    return f"{key} = {value!r} is invalid; allowed: {describe(annotation)}"


def _field_annotation(field: FieldInfo) -> Any:
    """A model field's type with its constraints, as `Annotated` (pydantic keeps them apart)."""
    return Annotated[(field.annotation, field, *field.metadata)] if field.metadata or field.description else field.annotation


def _unwrap(annotation: Any) -> tuple[Any, list]:
    if typing.get_origin(annotation) is Annotated:
        base, *meta = typing.get_args(annotation)
        inner, more = _unwrap(base)
        return inner, meta + more
    return annotation, []


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _dotted(path: list) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def lookup(raw: Any, path: list) -> Any:
    """The value at `path` (keys and list indices) in a parsed YAML tree; None where the path leads nowhere."""
    for part in path:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def describe(annotation: Any) -> str:
    """What a key takes, in words: 'an integer >= 1 and <= 500', 'one of sgd, adamw', ..."""
    base, meta = _unwrap(annotation)
    for m in meta:
        if isinstance(m, FieldInfo) and m.description:
            return m.description
    bounds = {}
    for m in meta:
        for item in (m.metadata if isinstance(m, FieldInfo) else [m]):
            for name in ("ge", "gt", "le", "lt", "min_length", "max_length"):
                if getattr(item, name, None) is not None:
                    bounds[name] = getattr(item, name)
    if base is bool:
        return "one of True, False"
    if typing.get_origin(base) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(base)))
    if base in (int, float):
        words = [f"{sign} {bounds[name]}" for name, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                 if name in bounds]
        return ("an integer" if base is int else "a finite number") + (" " + " and ".join(words) if words else "")
    if base is str:
        return "a non-empty string"
    if typing.get_origin(base) is list:
        return f"a list of {bounds.get('min_length', 0)}..{bounds.get('max_length') or 'n'} items"
    if typing.get_origin(base) is dict:
        return "a mapping of names to blocks"
    if isinstance(base, type) and issubclass(base, BaseModel):
        return "a mapping with keys " + ", ".join(base.model_fields)
    return str(base)


def read_yaml(path: str | Path) -> Any:
    """YAML 1.2, as DVC reads params: `dvc exp run -S vae.kl_weight=0.00001` writes `1e-05`, a float."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(Path(path).read_text())


def load(path: str | Path = "params.yaml") -> dict:
    """Read and validate params.yaml; any problem is one LatentlabError line."""
    from ruamel.yaml import YAMLError

    path = Path(path)
    if not path.is_file():
        raise LatentlabError(f"{path}: not found; run the stage from the repository root")
    try:
        raw = read_yaml(path)
    except YAMLError as exc:
        raise LatentlabError(f"{path}: not valid YAML {_yaml_problem(exc)}; fix the syntax") from None
    checked = validate(raw)
    _loaded[path.resolve()] = _digest(path)
    return checked


_loaded: dict[Path, str] = {}  # params files this process validated, by the digest they had then


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_unchanged() -> None:
    """Fail when a params file changed after the stage read it: its outputs would be recorded under
    params they were not computed with (two `dvc exp run -S` in one clone, an edit during a run)."""
    for path, digest in _loaded.items():
        if not path.is_file() or _digest(path) != digest:
            raise LatentlabError(f"{path.name} changed while the stage ran, so its results match neither "
                                 "version; nothing was kept: run one experiment at a time per clone "
                                 "(or `dvc exp run --queue`), then re-run")


def _yaml_problem(exc) -> str:
    """Where the broken construct starts (an unclosed `[` is found lines later) and why it is broken."""
    start, found = getattr(exc, "context_mark", None), getattr(exc, "problem_mark", None)
    line = (start or found).line + 1 if (start or found) else None
    reason = ", ".join(part for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part)
    where = f"at line {line}" if line else ""
    if start and found and found.line != start.line:
        reason += f" (noticed at line {found.line + 1})"
    return f"{where}: {reason}" if reason else where
