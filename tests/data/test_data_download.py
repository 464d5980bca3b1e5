import os
import dataclasses
import hashlib
import socket

from pathlib import Path

import numpy as np
import pytest

import cnnlab.data.registry as registry
from cnnlab.data import describe, load
from cnnlab.errors import ChecksumError, DataError


def _with_checksums_of(spec, folder):
    """`spec` with the MD5s of the generated files in `folder`, as if they were the published ones."""
    files = tuple(dataclasses.replace(f, md5=hashlib.md5((folder / f.name).read_bytes()).hexdigest(),
                                      raw_sha256=None) for f in spec.files)
    return dataclasses.replace(spec, files=files)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(folder):
    return sorted(p.name for p in folder.glob(".*.tmp")) if folder.exists() else []


def test_downloads_missing_files_from_a_mirror_and_verifies_them(tmp_path, write_idx_dataset,
                                                                 serve_folder, monkeypatch):
    written = write_idx_dataset(tmp_path / "mirror" / "mnist")
    monkeypatch.setitem(registry.REMOTE, "mnist", _with_checksums_of(registry.MNIST, tmp_path / "mirror" / "mnist"))
    data_dir = tmp_path / "data"
    (data_dir / "mnist").mkdir(parents=True)
    # one file already present: only the other three are fetched
    (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(
        (tmp_path / "mirror" / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    splits = load("mnist", data_dir, mirror=serve_folder(tmp_path / "mirror"))
    np.testing.assert_array_equal(splits["train"].images[:, 0], written["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(splits["test"].labels, written["t10k-labels-idx1-ubyte"])
    assert sorted(p.name for p in (data_dir / "mnist").iterdir()) == sorted(
        f.name for f in registry.MNIST.files)
    rows = {r["name"]: r for r in describe(data_dir)}
    assert rows["mnist"]["present"] and rows["mnist"]["verified"] is True


def test_checksum_mismatch_raises_and_keeps_nothing(tmp_path, write_idx_dataset, serve_folder, monkeypatch):
    write_idx_dataset(tmp_path / "mirror" / "fashion-mnist")  # not the published files
    monkeypatch.setenv("CNNLAB_MIRROR", serve_folder(tmp_path / "mirror"))
    with pytest.raises(ChecksumError, match="published checksum is 8d4fb7e6c68d591d4c3dfef9ec88bf0d") as info:
        load("fashion-mnist", tmp_path / "data")
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    target = tmp_path / "data" / "fashion-mnist"
    assert not (target / "train-images-idx3-ubyte.gz").exists()
    assert _leftovers(target) == []


def test_unreachable_mirror_names_the_files_and_the_folder(tmp_path):
    with pytest.raises(DataError) as info:
        load("cifar10", tmp_path, mirror=f"http://127.0.0.1:{_closed_port()}", timeout=2)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "cifar10") in message
    assert "refused" in message.lower()
    assert _leftovers(tmp_path / "cifar10") == []


def test_missing_file_on_the_mirror_is_a_data_error(tmp_path, serve_folder):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"mnist/train-images-idx3-ubyte\.gz failed \(HTTP 404 "):
        load("mnist", tmp_path / "data", mirror=serve_folder(tmp_path / "empty"))


def test_download_disabled_names_the_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"mnist is not in .*missing train-images-idx3-ubyte.gz, "
                                        r"train-labels-idx1-ubyte.gz"):
        load("mnist", tmp_path, download=False)


def test_real_files_download_from_a_local_mirror_with_the_published_checksums(tmp_path, shared_data, serve_folder):
    splits = load("mnist", tmp_path, mirror=serve_folder(shared_data))
    assert splits["train"].images.shape == (60000, 1, 28, 28)
    assert np.bincount(splits["test"].labels).tolist()[:3] == [980, 1135, 1032]


def test_describe_reports_missing_mismatching_and_loose_files(tmp_path, write_idx_dataset, shared_data):
    write_idx_dataset(tmp_path / "fashion-mnist")  # right names, wrong content
    for f in registry.MNIST.files:  # the real MNIST files loose in the data dir
        (tmp_path / f.name).write_bytes((shared_data / "mnist" / f.name).read_bytes())
    rows = {r["name"]: r for r in describe(tmp_path)}
    assert rows["mnist"]["present"] and rows["mnist"]["verified"] is True
    assert rows["mnist"]["location"] == str(tmp_path)
    assert rows["fashion-mnist"]["present"] and rows["fashion-mnist"]["verified"] is False
    assert "checksum mismatch: train-images-idx3-ubyte.gz" in rows["fashion-mnist"]["note"]
    assert not rows["cifar10"]["present"] and rows["cifar10"]["verified"] is None
    assert rows["digits"]["present"]
    # loose MNIST files must not pass for Fashion-MNIST, whose file names are the same
    (tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz").unlink()
    rows = {r["name"]: r for r in describe(tmp_path)}
    assert not rows["fashion-mnist"]["present"]


def test_cifar_archive_downloads_then_loads_from_the_cache(tmp_path, write_cifar, serve_folder, monkeypatch):
    written = write_cifar(tmp_path / "mirror" / "cifar10")
    monkeypatch.setitem(registry.REMOTE, "cifar10", _with_checksums_of(registry.CIFAR10, tmp_path / "mirror" / "cifar10"))
    splits = load("cifar10", tmp_path / "data", mirror=serve_folder(tmp_path / "mirror"))
    np.testing.assert_array_equal(splits["test"].images, written["test"][0])
    assert (tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz").is_file()
    assert len([p for p in Path(os.environ["CNNLAB_CACHE"]).iterdir() if p.is_dir()]) == 1  # one entry
    rows = {r["name"]: r for r in describe(tmp_path / "data")}
    assert rows["cifar10"]["verified"] is True


def test_describe_says_extracted_cifar_batches_have_no_checksum(tmp_path, write_cifar):
    write_cifar(tmp_path / "cifar10", as_archive=False)
    row = {r["name"]: r for r in describe(tmp_path)}["cifar10"]
    assert row["present"] and row["verified"] is None and "no published checksum" in row["note"]
    assert row["location"] == str(tmp_path / "cifar10" / "cifar-10-batches-py")
