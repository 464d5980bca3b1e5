"""CIFAR-10 python batches (`cifar-10-python.tar.gz` or `cifar-10-batches-py/`).

The batches are Python pickles. They are read with `RestrictedUnpickler`, which admits only
what a dict of numpy arrays, lists, bytes, str and ints needs, so a crafted file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
BATCH_DIR = "cifar-10-batches-py"

# The only globals a pickled numpy array (protocols 2-5, numpy 1.x and 2.x) refers to.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol 2 writes bytes
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers, bytes, str, numbers and numpy arrays; refuses anything else."""

    def __init__(self, file, *, source: str = "<pickle>"):
        # latin1: the canonical batches are Python 2 pickles whose str fields hold raw bytes
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(
                f"refused to load {self.source}: it asks to import '{module}.{name}', but a "
                "CIFAR batch holds only numpy arrays, lists, bytes, str and ints. The file is "
                "not a genuine CIFAR-10 batch and may be malicious; delete it and download it again."
            )
        # numpy 2 moved numpy.core to numpy._core; use the live module, not the deprecated shim
        if _NUMPY_2 and module.startswith("numpy.core."):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def restricted_loads(data: bytes, source: str = "<pickle>"):
    """Unpickle `data` with `RestrictedUnpickler`; malformed data raises DataError."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except DataError:
        raise
    except Exception as err:  # pickle raises many types on malformed input
        raise DataError(f"cannot read {source} as a CIFAR batch pickle: {type(err).__name__}: {err}. "
                        "The file is truncated or corrupt; delete it and download it again.") from None


def parse_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch -> (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    batch = _str_keys(restricted_loads(data, source))
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        keys = sorted(map(str, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{source} is not a CIFAR-10 batch: expected a dict with 'data' and "
                        f"'labels', found {keys}.")
    images, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3 * 32 * 32:
        found = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DataError(f"{source}: 'data' should be a uint8 array of shape (N, 3072), found {found}.")
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu":
        raise DataError(f"{source}: 'labels' should be {len(images)} integers, found "
                        f"{labels.dtype} {labels.shape}.")
    return images.reshape(-1, 3, 32, 32).copy(), labels.astype(np.int64)


def parse_meta(data: bytes, source: str) -> tuple[str, ...]:
    meta = _str_keys(restricted_loads(data, source))
    names = meta.get("label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{source} has no list of 'label_names'; it is not CIFAR-10's batches.meta.")
    return tuple(names)


def _str_keys(obj):
    """Batches pickled by Python 3 with encoding='bytes' conventions have bytes keys."""
    if isinstance(obj, dict):
        return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    return obj


def read_cifar10(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    """Read the tar.gz or the extracted folder -> {"train"|"test": (images, labels, classes)}."""
    path = Path(path)
    members = _read_members_from_tar(path) if path.is_file() else _read_members_from_dir(path)
    classes = parse_meta(members[META], f"{path}:{META}") if META in members else CIFAR10_CLASSES
    train = [parse_batch(members[name], f"{path}:{name}") for name in TRAIN_BATCHES]
    test_images, test_labels = parse_batch(members[TEST_BATCH], f"{path}:{TEST_BATCH}")
    train_images = np.concatenate([images for images, _ in train])
    train_labels = np.concatenate([labels for _, labels in train])
    return {"train": (train_images, train_labels, classes), "test": (test_images, test_labels, classes)}


def _read_members_from_dir(folder: Path) -> dict[str, bytes]:
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / n).is_file()]
    if missing:
        raise DataError(f"the CIFAR-10 folder {folder} lacks {', '.join(missing)}; it should hold "
                        f"{', '.join(TRAIN_BATCHES)}, {TEST_BATCH} and {META}.")
    names = [*TRAIN_BATCHES, TEST_BATCH] + ([META] if (folder / META).is_file() else [])
    return {name: (folder / name).read_bytes() for name in names}


def _read_members_from_tar(archive: Path) -> dict[str, bytes]:
    wanted = {f"{BATCH_DIR}/{n}": n for n in (*TRAIN_BATCHES, TEST_BATCH, META)}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = wanted.get(member.name.lstrip("./"))
                if name and member.isfile():
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"cannot read the CIFAR-10 archive {archive}: {err}. The download is "
                        "truncated or corrupt; delete it and download it again.") from None
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if n not in found]
    if missing:
        raise DataError(f"the CIFAR-10 archive {archive} lacks {', '.join(f'{BATCH_DIR}/{n}' for n in missing)}; "
                        "it is not cifar-10-python.tar.gz.")
    return found
