"""Builders for tiny, generated dataset files in the canonical formats."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode `array` (uint8 or int32) as an IDX file."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    array = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx_dataset(folder, n_train=30, n_test=10, size=28, seed=0, compress=True):
    """Write the four MNIST-style IDX files with random images and balanced labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        arrays[f"{prefix}-labels-idx1-ubyte"] = (np.arange(n) % 10).astype(np.uint8)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.fixture(name="idx_bytes")
def idx_bytes_fixture():
    return idx_bytes


@pytest.fixture(name="write_idx_dataset")
def write_idx_dataset_fixture():
    return write_idx_dataset


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_batch_bytes(images: np.ndarray, labels, protocol: int = 2, bytes_keys: bool = False) -> bytes:
    """A CIFAR-10 python batch: images uint8 (N, 3, 32, 32) -> pickled dict like the canonical one."""
    import pickle

    batch = {"batch_label": "generated", "labels": [int(v) for v in labels],
             "data": images.reshape(len(images), -1),
             "filenames": [f"img_{i}.png" for i in range(len(images))]}
    if bytes_keys:
        batch = {k.encode(): v for k, v in batch.items()}
    return pickle.dumps(batch, protocol=protocol)


def write_cifar(folder, per_batch=4, seed=0, as_archive=True, classes=None):
    """Write a tiny cifar-10-python.tar.gz (or the extracted folder) into `folder`.

    Returns {"train": (images, labels), "test": (images, labels)} as written.
    """
    import io
    import pickle
    import tarfile

    rng = np.random.default_rng(seed)
    members, written = {}, {"train": ([], []), "test": ([], [])}
    for name in CIFAR_BATCHES:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        members[name] = cifar_batch_bytes(images, labels)
        split = "test" if name == "test_batch" else "train"
        written[split][0].append(images)
        written[split][1].append(labels)
    if classes is not None:
        members["batches.meta"] = pickle.dumps({"label_names": list(classes), "num_vis": 3072}, protocol=2)
    folder.mkdir(parents=True, exist_ok=True)
    if as_archive:
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        (folder / "cifar-10-batches-py").mkdir()
        for name, data in members.items():
            (folder / "cifar-10-batches-py" / name).write_bytes(data)
    return {split: (np.concatenate(i), np.concatenate(l)) for split, (i, l) in written.items()}


@pytest.fixture(name="write_cifar")
def write_cifar_fixture():
    return write_cifar


@pytest.fixture(name="cifar_batch_bytes")
def cifar_batch_bytes_fixture():
    return cifar_batch_bytes


def write_image_tree(root, classes=("cat", "dog", "emu"), per_class=(3, 2), size=(6, 5),
                     mode="RGB", suffix=".png", seed=0):
    """PATH/{train,test}/<class>/<i><suffix> with random pixels; returns {(split, class): [arrays]}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written = {}
    for split, count in zip(("train", "test"), per_class):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            arrays = []
            for i in range(count):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels, mode).save(folder / f"{i}{suffix}")
                arrays.append(pixels)
            written[split, name] = arrays
    return written


@pytest.fixture(name="write_image_tree")
def write_image_tree_fixture():
    return write_image_tree


@pytest.fixture
def serve_folder():
    """Serve a folder over HTTP on 127.0.0.1 in a thread; yields a function folder -> base URL."""
    import functools
    import http.server
    import threading

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    servers = []

    def serve(folder):
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
