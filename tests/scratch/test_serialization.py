"""`.npz` state dicts: round trip, atomic writes, no pickle, clear errors on bad files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from cnnlab.errors import DataError, ModelError
from cnnlab.scratch.serialization import load_npz, save_npz


def test_round_trip_keeps_keys_order_dtypes_and_values(tmp_path):
    state = {
        "conv1.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
        "bn1.num_batches_tracked": np.array(7, dtype=np.int64),
        "optimizer/state/0/momentum_buffer": np.linspace(0, 1, 5),  # nested keys, '/'-joined
        "fc.bias": torch.tensor([1.5, -2.0], dtype=torch.float64),
        "meta": np.array('{"epoch": 3}'),
        "step": 12,
    }
    path = save_npz(tmp_path / "model.npz", state)
    loaded = load_npz(path)
    assert list(loaded) == list(state)
    assert loaded["conv1.weight"].dtype == np.float32
    np.testing.assert_array_equal(loaded["conv1.weight"], state["conv1.weight"])
    assert loaded["bn1.num_batches_tracked"].shape == () and loaded["bn1.num_batches_tracked"] == 7
    np.testing.assert_array_equal(loaded["optimizer/state/0/momentum_buffer"], np.linspace(0, 1, 5))
    np.testing.assert_array_equal(loaded["fc.bias"], [1.5, -2.0])
    assert str(loaded["meta"]) == '{"epoch": 3}' and int(loaded["step"]) == 12


def test_writes_exactly_the_named_file_and_leaves_no_temporaries(tmp_path):
    save_npz(tmp_path / "last", {"a": np.zeros(2)})  # no '.npz' appended
    save_npz(tmp_path / "last", {"a": np.ones(2)})  # replaced atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    np.testing.assert_array_equal(load_npz(tmp_path / "last")["a"], 1.0)


def test_unstorable_entries_are_refused_before_writing(tmp_path):
    path = save_npz(tmp_path / "best.npz", {"a": np.zeros(2)})
    with pytest.raises(ModelError, match=r"entry 'bad' is list of dtype object"):
        save_npz(path, {"a": np.ones(2), "bad": [np.zeros(2), "x"]})
    np.testing.assert_array_equal(load_npz(path)["a"], 0.0)


def test_a_save_that_fails_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_npz(tmp_path / "best.npz", {"a": np.zeros(2)})

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_npz(path, {"a": np.ones(2)})
    monkeypatch.undo()
    np.testing.assert_array_equal(load_npz(path)["a"], 0.0)
    assert [p.name for p in tmp_path.iterdir()] == ["best.npz"]


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([{"x": 1}], dtype=object))  # numpy pickles this entry
    with pytest.raises(DataError, match="pickled"):
        load_npz(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a zip file at all", "not a .npz"),
        (None, "not a .npz"),  # truncated: half of a real archive
    ],
)
def test_corrupt_files_raise_data_error(tmp_path, content, message):
    path = tmp_path / "broken.npz"
    if content is None:
        save_npz(path, {"w": np.random.default_rng(0).normal(size=1000)})
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_damaged_member_raises_data_error(tmp_path):
    path = save_npz(tmp_path / "crc.npz", {"w": np.zeros(1000)})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("w.npy")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF  # flip a payload byte
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        load_npz(path)


def test_missing_file_and_bad_keys(tmp_path):
    with pytest.raises(DataError, match="No .npz file at"):
        load_npz(tmp_path / "nope.npz")
    with pytest.raises(ModelError, match="keys must be non-empty strings; got 3"):
        save_npz(tmp_path / "x.npz", {3: np.zeros(1)})
    with pytest.raises(ModelError, match="mapping"):
        save_npz(tmp_path / "x.npz", [np.zeros(1)])
