"""Foundation: IDX parsing, verified fetching, safe tar reading, params validation, atomic output."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from latentlab.data import datasets, fetch
from latentlab.runtime import params
from latentlab.runtime.errors import LatentlabError
from latentlab.runtime.io import atomic_path, save_json

REPO = Path(__file__).resolve().parents[1]


# --- IDX -------------------------------------------------------------------------------------

def test_parse_idx_roundtrip_and_truncation():
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 2, 3, 4) + values.tobytes()
    np.testing.assert_array_equal(datasets.parse_idx(raw), values)
    with pytest.raises(LatentlabError, match="truncated"):
        datasets.parse_idx(raw[:-1], "x.idx")
    with pytest.raises(LatentlabError, match="bad magic"):
        datasets.parse_idx(b"\x01\x02" + raw[2:], "x.idx")


def test_mnist_idx_shapes_and_class_counts(raw_dir):
    split = datasets.load_idx_split(raw_dir / "mnist")
    assert split["x_train"].shape == (60000, 28, 28) and split["x_train"].dtype == np.uint8
    assert split["x_test"].shape == (10000, 28, 28)
    assert np.bincount(split["y_train"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(split["y_test"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_fashion_idx_balanced_classes(raw_dir):
    split = datasets.load_idx_split(raw_dir / "fashion-mnist")
    assert split["x_train"].shape == (60000, 28, 28)
    assert np.bincount(split["y_train"]).tolist() == [6000] * 10
    assert np.bincount(split["y_test"]).tolist() == [1000] * 10


# --- fetch -----------------------------------------------------------------------------------

def _gz(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as fh:
        fh.write(payload)
    return buf.getvalue()


@pytest.fixture
def tiny_catalogue(tmp_path):
    """Two mirrors with a small gz file: `bad` holds a copy with one byte flipped, `good` the real one."""
    payload = bytes(range(256)) * 64
    item = fetch.RawFile("toy", "toy.gz", hashlib.sha256(payload).hexdigest(), of_content=True)
    good, bad = tmp_path / "good", tmp_path / "bad"
    blob = _gz(payload)
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0xFF
    for mirror, content in ((good, blob), (bad, bytes(flipped))):
        (mirror / "toy").mkdir(parents=True)
        (mirror / "toy" / "toy.gz").write_bytes(content)
    return item, good, bad


def test_corrupt_mirror_copy_is_skipped_with_warning(tiny_catalogue, tmp_path, capsys):
    item, good, bad = tiny_catalogue
    dest = tmp_path / "raw"
    sources = fetch.fetch_all(dest, mirrors=[bad, good], catalogue=(item,))
    assert sources["toy/toy.gz"] == str(good / "toy" / "toy.gz")
    assert (dest / "toy" / "toy.gz").read_bytes() == (good / "toy" / "toy.gz").read_bytes()
    warning = capsys.readouterr().err
    assert "toy/toy.gz" in warning and str(bad) in warning and item.sha256 in warning


def test_only_corrupt_source_fails_and_writes_nothing(tiny_catalogue, tmp_path):
    item, good, bad = tiny_catalogue
    dest = tmp_path / "raw"
    with pytest.raises(LatentlabError, match="checksum mismatch") as err:
        fetch.fetch_all(dest, mirrors=[bad], catalogue=(item,))
    assert "toy/toy.gz" in str(err.value)
    assert not dest.exists() and not list(tmp_path.glob("*.partial"))
    assert (bad / "toy" / "toy.gz").exists(), "the mirror must never be modified"


def test_real_mnist_file_with_flipped_byte_is_rejected(mirrors, tmp_path):
    item = next(i for i in fetch.CATALOGUE if i.key == "mnist/t10k-labels-idx1-ubyte.gz")
    corrupt = tmp_path / "mirror" / "mnist"
    corrupt.mkdir(parents=True)
    source = next(m for m in mirrors if (m / item.key).is_file())
    blob = bytearray((source / item.key).read_bytes())
    blob[100] ^= 0x01
    (corrupt / item.name).write_bytes(bytes(blob))
    with pytest.raises(LatentlabError, match="no valid copy of mnist/t10k-labels"):
        fetch.fetch_all(tmp_path / "raw", mirrors=[tmp_path / "mirror"], catalogue=(item,))
    sources = fetch.fetch_all(tmp_path / "raw", mirrors=[tmp_path / "mirror", source], catalogue=(item,))
    assert sources[item.key].startswith(str(source))


def test_fetch_stage_without_any_source_fails_in_one_line(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    env = {"LATENTLAB_DATA_MIRRORS": str(tmp_path / "nowhere"), "LATENTLAB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, str(REPO / "stages" / "fetch.py")], cwd=tmp_path,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("latentlab fetch: error: no valid copy of")
    assert "Traceback" not in result.stderr and not (tmp_path / "data" / "raw").exists()


# --- tar safety ------------------------------------------------------------------------------

@pytest.mark.parametrize("evil", ["../evil.jpg", "/etc/evil.jpg", "dogs/../../evil.jpg"])
def test_tar_member_escaping_target_is_refused(tmp_path, evil):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo(evil)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(LatentlabError, match="outside the target folder"):
        list(datasets.iter_tar_files(archive))


def test_tar_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("dogs/link.jpg")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(LatentlabError, match="outside the target folder"):
        list(datasets.iter_tar_files(archive))


# --- params ----------------------------------------------------------------------------------

def _params():
    return params.load(REPO / "params.yaml")


def test_committed_params_are_valid():
    assert _params()["device"] == "auto"


def test_exponent_floats_as_dvc_writes_them_are_numbers(tmp_path):
    """`dvc exp run -S vae.kl_weight=0.00001` writes `1e-05`, a string to YAML 1.1 readers."""
    text = (REPO / "params.yaml").read_text().replace("kl_weight: 0.02", "kl_weight: 1e-05")
    (tmp_path / "params.yaml").write_text(text)
    assert params.load(tmp_path / "params.yaml")["vae"]["kl_weight"] == 1e-05


def test_misspelt_key_is_named_with_suggestion():
    raw = _params()
    raw["prepare"]["dogs"]["test_fractoin"] = raw["prepare"]["dogs"].pop("test_fraction")
    with pytest.raises(LatentlabError, match=r"unknown key 'prepare\.dogs\.test_fractoin'.*did you mean 'test_fraction'"):
        params.validate(raw)


@pytest.mark.parametrize("key, value, message", [
    ("vae.kl_weight", -0.5, "vae.kl_weight = -0.5 is invalid; allowed: a finite number >= 0"),
    ("vae.alphas", [0.0, 1.5], "vae.alphas[1] = 1.5 is invalid; allowed: a finite number >= 0 and <= 1"),
    ("vae.dataset", "celeba", "vae.dataset = 'celeba' is invalid; allowed: one of lfw4151, lfw_simplified"),
    ("vae.samples.gmm_components", 0, "vae.samples.gmm_components = 0 is invalid; allowed: an integer >= 1"),
    ("vae.samples.feature_dims", 1, "vae.samples.feature_dims = 1 is invalid; allowed: an integer >= 2"),
    ("vae.sweep_kl_weights", [0.5, -1], "vae.sweep_kl_weights[1] = -1 is invalid; allowed: a finite number >= 0"),
    ("ae_dogs.noise_std", [0.05, -0.1], "ae_dogs.noise_std[1] = -0.1 is invalid; allowed: a finite number > 0"),
    ("ae_dogs.latent.blend", 1.5, "ae_dogs.latent.blend = 1.5 is invalid"),
    ("ae_dogs.base.normalize", "yes", "ae_dogs.base.normalize = 'yes' is invalid"),
    ("ae_dogs.activation", "tanh", "ae_dogs.activation = 'tanh' is invalid; allowed: one of relu, silu"),
    ("ae_dogs.amp", 1, "ae_dogs.amp = 1 is invalid; allowed: one of auto, True, False"),
    ("ae_dogs.amp", "yes", "ae_dogs.amp = 'yes' is invalid; allowed: one of auto, True, False"),
    ("ae_mnist.variants.denoise.noise_factor", -0.1, "ae_mnist.variants.denoise.noise_factor = -0.1 is invalid"),
    ("ae_mnist.variants.l2.weight_decay", -1e-4, "ae_mnist.variants.l2.weight_decay = -0.0001 is invalid"),
    ("ae_mnist.variants.base.activation", "tanh", "ae_mnist.variants.base.activation = 'tanh' is invalid"),
])
def test_each_study_s_bad_values_are_refused_with_the_allowed_range(key, value, message):
    from conftest import committed_params

    with pytest.raises(LatentlabError) as err:
        params.validate(committed_params({key: value}))
    assert message in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    ({"ae_mnist.latent_grid.low": 6.0}, "ae_mnist.latent_grid.low = 6.0 must be below ae_mnist.latent_grid.high = 5.0"),
    ({"reduce.perplexity": 2000.0}, "reduce.perplexity = 2000.0 is out of range; allowed: below the number of "
                                    "samples (2000 = 10 x extract.per_class)"),
    ({"reduce.sklearn_models": ["resnet"]}, "reduce.sklearn_models: 'resnet' is not a network extract.models looks "
                                            "inside; allowed: lenet, mynet, mynet_bn, fashionnet, numpy_mlp"),
    ({"numpy_mlp.sizes": [784, 64, 9]}, "numpy_mlp.sizes = [784, 64, 9] is invalid; allowed: [784, ..., 10]"),
    ({"classifiers.mynet.lrr": 0.1}, "unknown key 'classifiers.mynet.lrr' (did you mean 'lr'?)"),
    ({"classifiers.mynet.augment": {"crop_padding": 9}}, "classifiers.mynet.augment.crop_padding = 9 is invalid; "
                                                         "allowed: an integer >= 0 and <= 8"),
    ({"classifier_defaults.epochs": 0}, "classifier_defaults.epochs = 0 is invalid; allowed: an integer >= 1"),
    ({"ae_mnist.variants.wide.bottleneck": 0}, "ae_mnist.variants.wide.bottleneck = 0 is invalid"),
    ({"vae.pairs": [[0, 1, 2]]}, "vae.pairs = [[0, 1, 2]] is invalid; allowed: 'auto' or a list of [i, j]"),
    ({"extract.models.lenet.layers": []}, "extract.models.lenet.layers = [] is invalid; allowed: a list of 1..10 items"),
    ({"fetch": 5}, "fetch = 5 is invalid; allowed: a mapping with keys timeout_s"),
    ({"classifiers.lenet": [1]}, "classifiers.lenet = [1] is invalid; allowed: a mapping with keys epochs, batch_size"),
    ({"ae_dogs.amp": 1}, "ae_dogs.amp = 1 is invalid; allowed: one of auto, True, False"),
])
def test_rules_across_keys_and_model_blocks_are_checked_with_the_rest(overrides, message):
    """Cross-key rules, a model block's overrides and the defaults they lie over: one line each, no stage run."""
    from conftest import committed_params

    with pytest.raises(LatentlabError) as err:
        params.validate(committed_params(overrides))
    assert message in str(err.value)


def test_a_model_block_names_only_what_differs_from_the_defaults():
    checked = _params()
    assert checked["classifiers"]["fashionnet"]["augment"] == {"crop_padding": 2, "hflip": True}
    assert checked["classifiers"]["mynet"] == {**checked["classifier_defaults"], "amp": False, "epochs": 15}
    assert checked["classifiers"]["mynet_bn"]["amp"] == "auto"
    assert checked["ae_mnist"]["variants"]["wide"]["hidden"] == [512, 256]
    assert checked["ae_mnist"]["variants"]["l2"]["lr"] == checked["ae_mnist"]["defaults"]["lr"]


@pytest.mark.parametrize("value, fragment", [(1.5, "< 1"), ("big", "a finite number"), (True, "a finite number")])
def test_out_of_range_or_wrong_type_names_key_and_range(value, fragment):
    raw = _params()
    raw["prepare"]["dogs"]["test_fraction"] = value
    with pytest.raises(LatentlabError) as err:
        params.validate(raw)
    assert "prepare.dogs.test_fraction" in str(err.value) and fragment in str(err.value)


def test_stage_with_misspelt_param_fails_before_work(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    text = (REPO / "params.yaml").read_text().replace("timeout_s:", "timeout_sec:")
    (tmp_path / "params.yaml").write_text(text)
    result = subprocess.run([sys.executable, str(REPO / "stages" / "fetch.py")], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == ("latentlab fetch: error: params.yaml: unknown key 'fetch.timeout_sec' "
                                     "(did you mean 'timeout_s'?); allowed here: timeout_s")
    assert not (tmp_path / "data").exists()


# --- atomic output ---------------------------------------------------------------------------

def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list((tmp_path / "out").iterdir()) == []
    save_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["metrics.json"]


def test_dvc_set_params_write_what_the_schema_reads(tmp_path):
    """`dvc exp run -S` edits params.yaml with DVC's own writer: the README's overrides must load back."""
    import shutil

    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    apply_overrides(str(path), ["++classifiers.lenet.epochs=2", "classifier_defaults.lr=0.03",
                                "vae.kl_weight=0.00001", "ae_dogs.noise_std=[0.05,0.1,0.15,0.2]"])
    loaded, committed = params.load(path), _params()
    assert loaded["classifiers"]["lenet"]["epochs"] == 2
    assert loaded["classifiers"]["mynet"]["epochs"] == committed["classifiers"]["mynet"]["epochs"]
    assert loaded["classifiers"]["mynet"]["lr"] == 0.03 and loaded["classifiers"]["mynet_bn"]["lr"] == 0.1
    assert loaded["vae"]["kl_weight"] == 1e-05 and loaded["ae_dogs"]["noise_std"] == [0.05, 0.1, 0.15, 0.2]
    assert loaded["ae_mnist"] == committed["ae_mnist"] and loaded["vae"]["sweep_kl_weights"] == [0.5, 0.05, 1e-05]
