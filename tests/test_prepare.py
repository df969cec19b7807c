"""The prepare stage's outputs: shapes, labels, split sizes and content checksums, from the real mirrors."""

from __future__ import annotations

import numpy as np
import pytest

from latentlab import data

# Checksums of the prepared arrays (data.content_sha256) from a verified run; preparation is
# deterministic, so any change here means the prepared data changed.
EXPECTED_SHA256 = {
    "fashion_mnist_28": "3e2b04815118299c6e7482fe3cd5761f6937f97c7e21fccf78572772cfa4fa0d",
    "fashion_mnist_32": "e35b6443477a7827a0e945f990ca748dc4e459e44299c012b13a07f0233ff435",
    "mnist": "fcc59c09976094087d807336f870d56b3cd3733c0e4d8f61012abe3d5d60674d",
}


@pytest.fixture(scope="module")
def fashion(raw_dir):
    return data.prepare_fashion(raw_dir, size=32)


def test_fashion_shapes_and_checksums(fashion):
    native, upsampled = fashion
    assert native["x_train"].shape == (60000, 28, 28) and upsampled["x_train"].shape == (60000, 32, 32)
    assert upsampled["x_test"].shape == (10000, 32, 32) and upsampled["x_test"].dtype == np.uint8
    np.testing.assert_array_equal(native["y_test"], upsampled["y_test"])
    assert data.content_sha256(native) == EXPECTED_SHA256["fashion_mnist_28"]
    assert data.content_sha256(upsampled) == EXPECTED_SHA256["fashion_mnist_32"]


def test_upsampling_preserves_the_image(fashion):
    native, upsampled = fashion
    back = data.resize_gray(upsampled["x_test"][:100], 28).astype(float)
    assert np.abs(back - native["x_test"][:100]).mean() < 10.0  # blur of the round trip; a one-pixel shift gives 20
    assert abs(upsampled["x_train"].mean() - native["x_train"].mean()) < 1.0


def test_mnist_checksum(raw_dir):
    assert data.content_sha256(data.prepare_mnist(raw_dir)) == EXPECTED_SHA256["mnist"]


def test_lfw_sets(raw_dir):
    simplified = data.prepare_lfw_simplified(raw_dir)
    assert simplified["x"].shape == (1000, 3, 32, 32)
    faces = data.prepare_lfw4151(raw_dir, size=32)
    assert faces["x"].shape == (4151, 3, 32, 32) and faces["x"].dtype == np.uint8
    assert int(faces["gender"].sum()) == 1067 and len(faces["person"]) == 4151
    assert faces["x"].std() > 40  # real photos, not blank frames


def test_dogs_split_is_seeded_and_complete(raw_dir):
    a, skipped = data.prepare_dogs(raw_dir, size=64, test_fraction=0.1, seed=0)
    assert skipped == 0
    assert a["x_train"].shape == (13328, 3, 64, 64) and a["x_test"].shape == (1481, 3, 64, 64)
    assert len(set(a["names_train"]) | set(a["names_test"])) == 14809
    assert not set(a["names_train"]) & set(a["names_test"])
    b, _ = data.prepare_dogs(raw_dir, size=64, test_fraction=0.1, seed=1)
    assert list(b["names_test"]) != list(a["names_test"])
    c, _ = data.prepare_dogs(raw_dir, size=64, test_fraction=0.1, seed=0)
    assert data.content_sha256(c) == data.content_sha256(a)
