"""The prepare stage's outputs: shapes, labels, split sizes and content checksums, from the real mirrors."""

from __future__ import annotations

import numpy as np
import pytest

from latentlab.data import datasets

# Checksums of the prepared arrays (datasets.content_sha256) from a verified run; preparation is
# deterministic, so any change here means the prepared data changed.
EXPECTED_SHA256 = {
    "fashion_mnist_28": "3e2b04815118299c6e7482fe3cd5761f6937f97c7e21fccf78572772cfa4fa0d",
    "fashion_mnist_32": "e35b6443477a7827a0e945f990ca748dc4e459e44299c012b13a07f0233ff435",
    "mnist": "fcc59c09976094087d807336f870d56b3cd3733c0e4d8f61012abe3d5d60674d",
}


@pytest.fixture(scope="module")
def fashion(raw_dir):
    return datasets.prepare_fashion(raw_dir, size=32)


def test_fashion_shapes_and_checksums(fashion):
    native, upsampled = fashion
    assert native["x_train"].shape == (60000, 28, 28) and upsampled["x_train"].shape == (60000, 32, 32)
    assert upsampled["x_test"].shape == (10000, 32, 32) and upsampled["x_test"].dtype == np.uint8
    np.testing.assert_array_equal(native["y_test"], upsampled["y_test"])
    assert datasets.content_sha256(native) == EXPECTED_SHA256["fashion_mnist_28"]
    assert datasets.content_sha256(upsampled) == EXPECTED_SHA256["fashion_mnist_32"]


def test_upsampling_preserves_the_image(fashion):
    native, upsampled = fashion
    back = datasets.resize_gray(upsampled["x_test"][:100], 28).astype(float)
    assert np.abs(back - native["x_test"][:100]).mean() < 10.0  # blur of the round trip; a one-pixel shift gives 20
    assert abs(upsampled["x_train"].mean() - native["x_train"].mean()) < 1.0


def test_mnist_checksum(raw_dir):
    assert datasets.content_sha256(datasets.prepare_mnist(raw_dir)) == EXPECTED_SHA256["mnist"]


def test_lfw_sets(raw_dir):
    simplified = datasets.prepare_lfw_simplified(raw_dir)
    assert simplified["x"].shape == (1000, 3, 32, 32)
    faces = datasets.prepare_lfw4151(raw_dir, size=32)
    assert faces["x"].shape == (4151, 3, 32, 32) and faces["x"].dtype == np.uint8
    assert int(faces["gender"].sum()) == 1067 and len(faces["person"]) == 4151
    assert faces["x"].std() > 40  # real photos, not blank frames


def test_dogs_split_is_seeded_and_complete(decoded_dogs):
    images, names, skipped = decoded_dogs
    assert skipped == 0 and len(set(names)) == len(images) == 14809
    a = datasets.split_dogs(images, names, test_fraction=0.1, seed=0)
    assert a["x_train"].shape == (13328, 3, 64, 64) and a["x_test"].shape == (1481, 3, 64, 64)
    assert len(set(a["names_train"]) | set(a["names_test"])) == 14809
    assert not set(a["names_train"]) & set(a["names_test"])
    b = datasets.split_dogs(images, names, test_fraction=0.1, seed=1)
    assert list(b["names_test"]) != list(a["names_test"])
    assert all(np.array_equal(a[k], c[k]) for k in a for c in [datasets.split_dogs(images, names, 0.1, seed=0)])
    by_name = dict(zip(np.concatenate([a["names_train"], a["names_test"]]), np.concatenate([a["x_train"], a["x_test"]])))
    assert all(np.array_equal(by_name[n], x) for n, x in zip(b["names_test"], b["x_test"]))  # same pixels, resplit


def _jpeg(color, size=(80, 60)) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def test_unreadable_dog_images_are_skipped_and_counted(tmp_path):
    """A truncated JPEG and a text file named .jpg are skipped (and counted), the rest prepared."""
    import io
    import tarfile

    dogs = tmp_path / "dogs"
    dogs.mkdir()
    good = _jpeg((200, 10, 10))
    members = {
        "stanford-dogs-2310.tar": {"s/a.jpg": good, "s/b.jpg": good[: len(good) // 2]},
        "petimages-dogs-12499.tar": {"p/c.jpg": _jpeg((10, 200, 10)), "p/d.jpg": b"not an image at all",
                                     "p/e.jpg": _jpeg((10, 10, 200), size=(50, 90))},
    }
    for archive, files in members.items():
        with tarfile.open(dogs / archive, "w") as tar:
            for name, blob in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    prepared, skipped = datasets.prepare_dogs(tmp_path, size=16, test_fraction=0.34, seed=0)
    assert skipped == 2
    assert sorted([*prepared["names_train"], *prepared["names_test"]]) == ["p/c.jpg", "p/e.jpg", "s/a.jpg"]
    assert prepared["x_train"].shape[1:] == (3, 16, 16) and len(prepared["x_test"]) == 1
    colours = np.concatenate([prepared["x_train"], prepared["x_test"]]).mean(axis=(2, 3))
    assert sorted(int(c.argmax()) for c in colours) == [0, 1, 2]  # red, green, blue survived decoding
