"""Loading is safe: no pickle runs when a model or an array is read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentlab.data import datasets
from latentlab.runtime import io
from latentlab.runtime.errors import LatentlabError


class Payload:
    """Stands in for an attacker's object: unpickling it would run code."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_load_torch_refuses_pickled_objects(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(2), "evil": Payload()}, path)
    with pytest.raises(LatentlabError, match=r"model.pt: unreadable \(UnpicklingError: Weights only load failed"):
        io.load_torch(path)
    io.save_torch(path, {"weight": torch.ones(2)})
    assert torch.equal(io.load_torch(path)["weight"], torch.ones(2))


def test_load_npz_refuses_object_arrays(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, ok=np.arange(3), evil=np.array([Payload()], dtype=object))
    with pytest.raises(LatentlabError, match=r"arrays.npz: unreadable \(ValueError: .*allow_pickle"):
        io.load_npz(path)


def test_truncated_prepared_file_gives_a_one_line_fix(tmp_path):
    io.save_npz(tmp_path / "mnist.npz", x_train=np.zeros((100, 28, 28), np.uint8))
    blob = (tmp_path / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(LatentlabError, match=r"mnist.npz: unreadable .*; delete it and run `dvc repro prepare`$"):
        datasets.load_prepared("mnist", folder=tmp_path)
    with pytest.raises(LatentlabError, match=r"missing; run `dvc repro prepare` first"):
        datasets.load_prepared("dogs", folder=tmp_path)
