import os
import pickle

from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import load
from cnnlab.data.cifar import CIFAR10_CLASSES, RestrictedUnpickler, parse_batch, read_cifar10, restricted_loads
from cnnlab.errors import DataError


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_refuses_a_pickle_that_would_run_a_shell_command(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _RunsShell(marker)}, protocol=protocol)
    with pytest.raises(DataError, match=r"refused .* 'posix\.system'") as info:
        restricted_loads(payload, source="evil_batch")
    assert "evil_batch" in str(info.value)
    assert not marker.exists()


def test_refuses_builtins_and_plain_classes():
    with pytest.raises(DataError, match=r"__builtin__\.eval|builtins\.eval"):
        restricted_loads(pickle.dumps(_Evaluates(), protocol=2))
    with pytest.raises(DataError, match="collections.OrderedDict"):
        import collections
        restricted_loads(pickle.dumps(collections.OrderedDict(a=1), protocol=2))


def test_find_class_admits_only_numpy_array_machinery():
    import io
    unpickler = RestrictedUnpickler(io.BytesIO(b""))
    assert unpickler.find_class("numpy", "ndarray") is np.ndarray
    with pytest.raises(DataError):
        unpickler.find_class("numpy", "load")


@pytest.mark.parametrize("protocol, bytes_keys", [(2, False), (2, True), (5, False)])
def test_reads_a_generated_batch(cifar_batch_bytes, rng, protocol, bytes_keys):
    images = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    labels = [3, 1, 4, 1, 5, 9]
    out_images, out_labels = parse_batch(cifar_batch_bytes(images, labels, protocol, bytes_keys), "b")
    np.testing.assert_array_equal(out_images, images)
    assert out_labels.dtype == np.int64 and out_labels.tolist() == labels


def test_wrong_shapes_and_garbage_are_data_errors(rng):
    with pytest.raises(DataError, match=r"uint8 array of shape \(N, 3072\)"):
        parse_batch(pickle.dumps({"data": np.zeros((2, 10), np.uint8), "labels": [0, 1]}, protocol=2), "b")
    with pytest.raises(DataError, match="'labels' should be 2 integers"):
        parse_batch(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, protocol=2), "b")
    with pytest.raises(DataError, match="truncated or corrupt"):
        parse_batch(pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=2)[:-40], "b")


@pytest.mark.parametrize("as_archive", [True, False])
def test_archive_and_extracted_folder_load_through_the_registry(tmp_path, write_cifar, as_archive):
    classes = [f"class{i}" for i in range(10)]
    written = write_cifar(tmp_path / "cifar10", as_archive=as_archive, classes=classes)
    splits = load("cifar10", tmp_path, download=False)
    for split in ("train", "test"):
        np.testing.assert_array_equal(splits[split].images, written[split][0])
        np.testing.assert_array_equal(splits[split].labels, written[split][1])
        assert splits[split].classes == tuple(classes)
    assert len(splits["train"]) == 20 and len(splits["test"]) == 4
    if as_archive:  # the decoded arrays were cached: a second load reads them back
        assert list(Path(os.environ["CNNLAB_CACHE"]).glob("cifar-10-python.tar.gz-*/meta.json"))
        again = load("cifar10", tmp_path, download=False)
        np.testing.assert_array_equal(again["train"].images, written["train"][0])


def test_default_class_names_without_meta(tmp_path, write_cifar):
    write_cifar(tmp_path, as_archive=False)
    assert read_cifar10(tmp_path / "cifar-10-batches-py")["train"][2] == CIFAR10_CLASSES


def test_archive_missing_batches_is_named(tmp_path):
    import tarfile
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz"):
        pass
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/data_batch_1"):
        read_cifar10(tmp_path / "cifar-10-python.tar.gz")
