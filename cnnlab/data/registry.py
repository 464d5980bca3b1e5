"""The dataset registry: names, where each dataset's files live, loading, download, description.

Data directory: the `data_dir` argument, then `$CNNLAB_DATA`, then `~/.cache/cnnlab`. Each
dataset has its own folder (`<data_dir>/mnist/`, `<data_dir>/fashion-mnist/`,
`<data_dir>/cifar10/`); files placed directly in `<data_dir>` are used too when their checksums
identify them (MNIST and Fashion-MNIST share file names). Downloads go to the dataset's folder.
`$CNNLAB_MIRROR` (or `mirror=`) replaces the canonical servers with `<mirror>/<name>/<file>`,
the same layout as a data directory, so any data directory served over HTTP is a mirror.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.cache import cached_splits, file_key, remembered
from cnnlab.data.cifar import BATCH_DIR, read_cifar10
from cnnlab.data.dataset import ArrayDataset
from cnnlab.data.download import DEFAULT_TIMEOUT_S, download as fetch, file_md5, is_network_error
from cnnlab.data.folder import read_image_folder
from cnnlab.data.idx import read_idx
from cnnlab.data.splits import stratified_split
from cnnlab.errors import DataError
from cnnlab.utils import did_you_mean

FOLDER_PREFIX = "folder:"
DIGITS_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name, the canonical MD5, and the SHA-256 of its uncompressed form."""

    name: str
    md5: str
    raw_sha256: str | None = None


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    url: str  # canonical base URL; a file's URL is url + file name
    files: tuple[RemoteFile, ...]
    classes: tuple[str, ...]


MNIST = RemoteDataset(
    "mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
    (
        RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                   "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                   "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                   "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                   "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ),
    tuple(str(d) for d in range(10)),
)
FASHION_MNIST = RemoteDataset(
    "fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    (
        RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                   "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                   "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                   "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                   "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)
CIFAR10 = RemoteDataset(
    "cifar10", "https://www.cs.toronto.edu/~kriz/",
    (RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)
REMOTE = {d.name: d for d in (MNIST, FASHION_MNIST, CIFAR10)}
DIGITS_CLASSES = tuple(str(d) for d in range(10))


def names() -> list[str]:
    """The registered dataset names; `folder:PATH` is accepted by `load` as well."""
    return ["digits", *REMOTE]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, then `$CNNLAB_DATA`, then `~/.cache/cnnlab`."""
    chosen = data_dir or os.environ.get("CNNLAB_DATA") or Path.home() / ".cache" / "cnnlab"
    return Path(chosen).expanduser()


def resolve_cache_dir() -> Path:
    """Where decoded arrays are cached: `$CNNLAB_CACHE`, else `~/.cache/cnnlab/cache`.

    Never inside the data directory: a user's data folder may be a shared, read-only copy.
    """
    chosen = os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab" / "cache"
    return Path(chosen).expanduser()


def load(name: str, data_dir: str | os.PathLike | None = None, download: bool = True, *,
         mirror: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, ArrayDataset]:
    """Load a dataset -> {"train": ArrayDataset, "test": ArrayDataset}.

    name: one of `names()` or `folder:PATH`. Missing files are downloaded when `download`
    is true (from `mirror`, `$CNNLAB_MIRROR` or the canonical server).
    """
    root = resolve_data_dir(data_dir)
    if not isinstance(name, str):
        raise DataError(f"a dataset name must be a string; received {name!r} ({type(name).__name__}).")
    if name.startswith(FOLDER_PREFIX):
        return _load_folder(name[len(FOLDER_PREFIX):], root)
    if name == "digits":
        return load_digits()
    if name not in REMOTE:
        raise DataError(f"unknown dataset '{name}'. Known datasets: {', '.join(names())}, or "
                        f"'folder:PATH' for an image folder.{did_you_mean(name, names())}")
    spec = REMOTE[name]
    paths = _find_files(spec, root)
    missing = [f for f, p in zip(spec.files, paths) if p is None]
    if name == "cifar10" and _find_cifar_dir(root) is not None:
        missing = []  # the extracted batches do instead of the archive
    if missing:
        if not download:
            raise DataError(f"{name} is not in {root / name}: missing {_listing(missing)}. Put "
                            f"the files there (from {spec.url}), or allow downloading.")
        _download_missing(spec, missing, root, mirror, timeout)
        paths = _find_files(spec, root)
    if name == "cifar10":
        return _load_cifar10(root, paths[0])
    return remembered(file_key(paths), lambda: _load_idx(spec, *paths))


def _image_folder_copy(name: str, root: Path) -> Path | None:
    """A `<name>-jpg.tar` (or extracted `<name>-jpg/`) image folder in the data directory, which
    `folder:PATH` can read instead of the canonical files (CIFAR-10 is kept so here)."""
    for folder in (root, root / name):
        for candidate in (folder / f"{name}-jpg.tar", folder / f"{name}-jpg"):
            if candidate.exists():
                return candidate
    return None


def describe(data_dir: str | os.PathLike | None = None) -> list[dict]:
    """One dict per registered dataset: name, location, present, verified (None: no checksum), note.

    Checksums of the files present are computed, so this reads every file once.
    """
    root = resolve_data_dir(data_dir)
    rows = [dict(name="digits", location="scikit-learn (embedded)", present=True, verified=None,
                 note="bundled with scikit-learn; needs no files")]
    for spec in REMOTE.values():
        paths = _find_files(spec, root)
        found = [p for p in paths if p is not None]
        cifar_dir = _find_cifar_dir(root) if spec is CIFAR10 else None
        if cifar_dir is not None and not found:
            rows.append(dict(name=spec.name, location=str(cifar_dir), present=True, verified=None,
                             note=f"extracted {BATCH_DIR}/; no published checksum to verify"))
            continue
        location = str(found[0].parent) if found else str(root / spec.name)
        if len(found) < len(paths):
            missing = [f for f, p in zip(spec.files, paths) if p is None]
            note = f"missing {_listing(missing)}; downloaded on first use"
            images = _image_folder_copy(spec.name, root)
            if images is not None:
                note += f"; or use the image folder found here: --dataset folder:{images}"
            rows.append(dict(name=spec.name, location=location, present=False, verified=None,
                             note=note))
            continue
        bad = [p.name for f, p in zip(spec.files, paths) if not _matches(f, p)]
        rows.append(dict(name=spec.name, location=location, present=True, verified=not bad,
                         note=f"checksum mismatch: {', '.join(bad)}" if bad else "checksums match"))
    return rows


def load_digits() -> dict[str, ArrayDataset]:
    """scikit-learn's 8x8 digits as uint8 (N, 1, 8, 8) in 0..255, stratified 80/20 split."""
    table = _digits_table()
    # pixel values are 0..16; scale to the 0..255 range the rest of cnnlab expects
    images = np.rint(table[:, :64].reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = table[:, 64].astype(np.int64)
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SEED)
    return {"train": ArrayDataset(images[train_idx], labels[train_idx], DIGITS_CLASSES),
            "test": ArrayDataset(images[test_idx], labels[test_idx], DIGITS_CLASSES)}


def _digits_table() -> np.ndarray:
    """The digits as a (1797, 65) array: 64 pixels (0..16), then the label.

    Read straight from the `digits.csv.gz` that scikit-learn ships, the file its `load_digits`
    parses, because importing scikit-learn costs ~2 s, paid by every run process of a study;
    its loader is the fallback should a release move the file.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                return np.loadtxt(f, delimiter=",")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return np.column_stack([bunch.data, bunch.target])


def _load_idx(spec: RemoteDataset, train_images: Path, train_labels: Path,
              test_images: Path, test_labels: Path) -> dict[str, ArrayDataset]:
    splits = {}
    for split, image_path, label_path in (("train", train_images, train_labels),
                                          ("test", test_images, test_labels)):
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(f"{image_path} holds {images.dtype} data of shape {images.shape}; "
                            f"{spec.name} images are uint8 of shape (N, H, W).")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{label_path} holds labels of shape {labels.shape} for "
                            f"{len(images)} images in {image_path}; the files do not belong together.")
        splits[split] = ArrayDataset(images[:, None], labels.astype(np.int64), spec.classes)
    return splits


def _load_cifar10(root: Path, archive: Path | None) -> dict[str, ArrayDataset]:
    batch_dir = _find_cifar_dir(root)
    if batch_dir is not None:
        # the extracted batches load fast: no cache on disk, only this process's memory
        return remembered(file_key(sorted(batch_dir.iterdir())), lambda: _cifar_splits(batch_dir))
    # decompressing 170 MB on every load costs seconds: keep the arrays
    return cached_splits(resolve_cache_dir(), archive, lambda: _cifar_splits(archive))


def _cifar_splits(source: Path) -> dict[str, ArrayDataset]:
    raw = read_cifar10(source)
    return {split: ArrayDataset(*raw[split]) for split in ("train", "test")}


def _load_folder(path_text: str, root: Path) -> dict[str, ArrayDataset]:
    if not path_text:
        raise DataError("dataset 'folder:' needs a path, e.g. 'folder:/data/pets' or "
                        "'folder:cifar10-jpg.tar'.")
    path = Path(path_text).expanduser()
    if not path.is_absolute() and not path.exists() and (root / path).exists():
        path = root / path  # relative paths may also name something in the data directory
    return cached_splits(resolve_cache_dir(), path, lambda: read_image_folder(path))


def _search_dirs(spec: RemoteDataset, root: Path) -> list[tuple[Path, bool]]:
    """(folder, must_checksum): loose files whose names several datasets share (MNIST and
    Fashion-MNIST) must prove by checksum which dataset they are."""
    shared_names = any(f.name == g.name for other in REMOTE.values() if other.name != spec.name
                       for f in spec.files for g in other.files)
    return [(root / spec.name, False), (root, shared_names)]


def _find_files(spec: RemoteDataset, root: Path) -> list[Path | None]:
    """For each of the dataset's files, the path where it is (gzip or uncompressed) or None."""
    found = []
    for remote in spec.files:
        hit = None
        for folder, must_checksum in _search_dirs(spec, root):
            for candidate in _variants(folder, remote):
                if candidate.is_file() and (not must_checksum or _matches(remote, candidate)):
                    hit = candidate
                    break
            if hit:
                break
        found.append(hit)
    return found


def _find_cifar_dir(root: Path) -> Path | None:
    for folder, _ in _search_dirs(CIFAR10, root):
        if (folder / BATCH_DIR / "data_batch_1").is_file():
            return folder / BATCH_DIR
    return None


def _variants(folder: Path, remote: RemoteFile) -> list[Path]:
    names = [remote.name]
    if remote.name.endswith(".gz") and remote.raw_sha256:
        names.append(remote.name[:-3])
    return [folder / n for n in names]


def _matches(remote: RemoteFile, path: Path) -> bool:
    """Does the file have the published checksum (MD5 for the .gz, SHA-256 for the raw file)?"""
    if path.name == remote.name:
        return file_md5(path) == remote.md5
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == remote.raw_sha256


def _download_missing(spec: RemoteDataset, missing: list[RemoteFile], root: Path,
                      mirror: str | None, timeout: float) -> None:
    target = root / spec.name
    base = mirror or os.environ.get("CNNLAB_MIRROR")
    for remote in missing:
        url = f"{base.rstrip('/')}/{spec.name}/{remote.name}" if base else spec.url + remote.name
        try:
            fetch(url, target / remote.name, remote.md5, timeout=timeout)
        except Exception as err:
            if not is_network_error(err):
                raise
            reason = f"HTTP {err.code} {err.reason}" if isinstance(err, urllib.error.HTTPError) \
                else getattr(err, "reason", None) or err
            raise DataError(f"cannot download {spec.name}: {url} failed ({reason}). To add it by "
                            f"hand (e.g. offline), put {_listing(missing)} into {target} (from "
                            f"{spec.url} or any copy with the same checksums) and run again.") from None


def _listing(files: list[RemoteFile]) -> str:
    return ", ".join(f.name for f in files)
