"""Checkpoints: .pt and .npz round trips without pickle, atomic replacement on failure."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.callbacks import CSVLogger
from cnnlab.training.checkpoint import flatten, load_checkpoint, save_checkpoint, unflatten
from cnnlab.training.loop import FitState


def _payload():
    return {
        "model": {"conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "fc.bias": np.ones(2)},
        "optimizer": {"state": {0: {"momentum": np.full(3, 0.5)}, 1: {}},
                      "param_groups": [{"lr": 0.1, "params": [0, 1], "betas": (0.9, 0.99)}]},
        "epoch": 3,
        "best": {"monitor": "val_acc", "value": 0.75, "epoch": None},
        "odd": {"#hash": 1, "@at": "x", "\\slash": True, "empty": [], "nothing": {}},
    }


def _assert_same(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, np.asarray(b))
    else:
        assert a == b


def test_npz_round_trip_keeps_structure_int_keys_and_lists(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", _payload())
    with np.load(path, allow_pickle=False) as npz:  # readable without pickle
        assert "model/conv1.weight" in npz.files and "__meta__" in npz.files
    back = load_checkpoint(path)
    _assert_same(_payload(), back)
    assert list(back["optimizer"]["state"]) == [0, 1]
    assert isinstance(back["optimizer"]["param_groups"], list)


def test_flatten_unflatten_accepts_torch_tensors():
    arrays, meta = flatten({"w": torch.ones(2), "n": 1})
    assert isinstance(arrays["w"], np.ndarray) and meta == {"n": 1}
    assert unflatten(arrays, meta)["n"] == 1


def test_pt_round_trip_loads_with_weights_only(tmp_path):
    payload = {"model": {"w": torch.arange(4.0)}, "epoch": 2, "rng": {"torch": torch.get_rng_state()}}
    path = save_checkpoint(tmp_path / "c.pt", payload)
    back = torch.load(path, weights_only=True)
    assert back["epoch"] == 2 and torch.equal(back["model"]["w"], payload["model"]["w"])


def test_objects_that_need_pickle_are_refused(tmp_path):
    with pytest.raises(CnnlabError, match="only arrays"):
        save_checkpoint(tmp_path / "c.npz", {"f": object()})
    with pytest.raises(CnnlabError, match=".pt or .npz"):
        save_checkpoint(tmp_path / "c.pkl", {})


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CnnlabError, match="corrupt"):
        load_checkpoint(bad)


def _fail_fsync(monkeypatch):
    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
def test_failed_checkpoint_write_leaves_the_old_file(tmp_path, monkeypatch, suffix):
    path = save_checkpoint(tmp_path / f"last{suffix}", {"epoch": 1, "w": np.zeros(2)})
    before = path.read_bytes()
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "w": np.ones(2)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_failed_metrics_write_leaves_the_old_csv(tmp_path, monkeypatch):
    logger = CSVLogger(tmp_path / "metrics.csv")
    row = dict(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=1.1, val_acc=0.4, lr=0.1, epoch_s=1.0)
    logger.state = FitState(engine=None, scheduler=None, epochs=2, history=[row])
    logger.on_epoch_end(1, row)
    before = logger.path.read_text()
    logger.state.history.append({**row, "epoch": 2})
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError):
        logger.on_epoch_end(2, row)
    assert logger.path.read_text() == before and before.count("\n") == 2
