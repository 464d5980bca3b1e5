"""Datasets kept in the process's memory (`cnnlab.data.cache.remembered`): a second load of
unchanged files reuses the arrays, read-only; a changed file is read again."""

import os
import warnings

import numpy as np
import pytest

import cnnlab.data.registry as registry
from cnnlab.data import BatchLoader, load
from cnnlab.data.cache import MEMORY_ENTRIES, forget_loaded


def _counting_reads(monkeypatch):
    calls = []
    real = registry.read_idx

    def read_idx(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(registry, "read_idx", read_idx)
    return calls


def test_a_second_load_reuses_the_arrays_read_only_and_a_changed_file_is_read_again(tmp_path, monkeypatch, write_idx_dataset):
    write_idx_dataset(tmp_path / "mnist", seed=0)
    calls = _counting_reads(monkeypatch)
    first = load("mnist", tmp_path)
    assert len(calls) == 4
    second = load("mnist", tmp_path)
    assert len(calls) == 4  # nothing read or decoded again
    assert second["train"].images is first["train"].images and second is not first
    for split in ("train", "test"):
        assert not second[split].images.flags.writeable and not second[split].labels.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        second["train"].images[0, 0, 0, 0] = 1  # a caller cannot change what later callers get

    write_idx_dataset(tmp_path / "mnist", seed=1)  # new contents, same names and sizes
    os.utime(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", ns=(1, 1))  # a new mtime on any clock
    third = load("mnist", tmp_path)
    assert len(calls) == 8
    assert not np.array_equal(third["train"].images, first["train"].images)

    forget_loaded()
    load("mnist", tmp_path)
    assert len(calls) == 12


def test_only_the_most_recent_datasets_are_kept(tmp_path, monkeypatch, write_idx_dataset):
    names = [f"set{i}" for i in range(MEMORY_ENTRIES + 1)]
    for i, name in enumerate(names):
        write_idx_dataset(tmp_path / name / "mnist", seed=i)
    calls = _counting_reads(monkeypatch)
    for name in names:
        load("mnist", tmp_path / name)
    load("mnist", tmp_path / names[-1])  # the newest: kept
    assert len(calls) == 4 * len(names)
    load("mnist", tmp_path / names[0])  # the oldest: dropped, read again
    assert len(calls) == 4 * (len(names) + 1)


def test_a_batch_loader_over_remembered_arrays_trains_without_a_torch_warning(tmp_path, write_idx_dataset):
    write_idx_dataset(tmp_path / "mnist")
    load("mnist", tmp_path)
    train = load("mnist", tmp_path)["train"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on read-only numpy memory
        loader = BatchLoader(train, 8, shuffle=True, mean=(0.5,), std=(0.25,))
        x, y = next(iter(loader))
    assert tuple(x.shape) == (8, 1, 28, 28) and y.dtype.is_floating_point is False
