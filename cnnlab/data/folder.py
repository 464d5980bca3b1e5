"""Image folders: `ROOT/{train,test}/<class>/*.{png,jpg,jpeg,bmp}`, as a directory or a `.tar`.

A tar may wrap the tree in one top-level directory (`cifar10-jpg/train/...`). Images are decoded
with Pillow into uint8 (N, C, H, W): C is 1 when the first image is grayscale, else 3 (RGB).
Large sets are decoded by a pool of processes, each reading its share straight from the files.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.dataset import ArrayDataset
from cnnlab.data.tarscan import scan_tar
from cnnlab.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SPLITS = ("train", "test")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
# below this many images a process pool costs more than it saves
POOL_MIN_IMAGES = 2000


@dataclass(frozen=True)
class ImageRef:
    """Where one image's bytes are: a whole file, or `size` bytes at `offset` inside a file."""

    name: str  # shown in errors
    split: str
    label: str
    file: str
    offset: int = 0
    size: int = -1


def read_image_folder(path: str | os.PathLike, workers: int | None = None) -> dict[str, ArrayDataset]:
    """Decode an image folder or tar -> {"train": ArrayDataset, "test": ArrayDataset}.

    workers: decoding processes (None: one per available core; 1: decode in this process).
    """
    path = Path(path)
    if path.is_dir():
        refs = _refs_from_dir(path)
    elif path.is_file() and tarfile.is_tarfile(path):
        refs = _refs_from_tar(path)
    else:
        state = "is not a folder or a tar archive" if path.exists() else "does not exist"
        raise DataError(f"image folder dataset 'folder:{path}': {path} {state}. Give a folder laid "
                        "out as PATH/train/<class>/*.png and PATH/test/<class>/*.png (png, jpg, "
                        "jpeg or bmp), or an uncompressed .tar of such a tree.")
    counts = {split: sum(ref.split == split for ref in refs) for split in SPLITS}
    if not all(counts.values()):
        raise DataError(f"image folder {path} has {counts['train']} train and {counts['test']} test "
                        "images; both PATH/train/<class>/ and PATH/test/<class>/ need images "
                        f"({', '.join(IMAGE_SUFFIXES)}).")
    classes = check_classes(refs, path)
    channels, height, width = _probe(refs[0])
    images = decode_images(refs, channels, (height, width), workers)
    label_of = {name: i for i, name in enumerate(classes)}
    labels = np.array([label_of[ref.label] for ref in refs], dtype=np.int64)
    n_train = counts["train"]  # refs are sorted train first
    return {"train": ArrayDataset(images[:n_train], labels[:n_train], classes),
            "test": ArrayDataset(images[n_train:], labels[n_train:], classes)}


def check_classes(refs: list[ImageRef], path) -> tuple[str, ...]:
    """The class names (natural order) after checking that train and test agree.

    A classifier needs at least two classes, and every class must have training images (else its
    output is never trained) and test images (else its accuracy is never measured).
    """
    per_split = {split: {ref.label for ref in refs if ref.split == split} for split in SPLITS}
    classes = tuple(sorted(per_split["train"] | per_split["test"], key=_natural_key))
    if len(classes) < 2:
        raise DataError(f"image folder {path} has a single class ({', '.join(classes)}); a classifier "
                        "needs at least two: add a folder PATH/train/<class>/ and PATH/test/<class>/ "
                        "for each class.")
    for split, other in (("test", "train"), ("train", "test")):
        only = sorted(per_split[split] - per_split[other], key=_natural_key)
        if only:
            shown = ", ".join(f"'{name}'" for name in only[:10]) + (" ..." if len(only) > 10 else "")
            raise DataError(f"image folder {path}: class(es) {shown} have images in {split}/ but none in "
                            f"{other}/; every class needs images in both PATH/train/<class>/ and "
                            f"PATH/test/<class>/ (add them, or remove the class folder from {split}/).")
    return classes


def decode_images(refs: list[ImageRef], channels: int, size: tuple[int, int],
                  workers: int | None = None) -> np.ndarray:
    """Decode every ref -> uint8 (N, C, H, W); all images must be `size` = (H, W)."""
    workers = workers or _available_cores()
    if workers <= 1 or len(refs) < POOL_MIN_IMAGES:
        nhwc = _decode_chunk((refs, channels, size))
    else:
        import multiprocessing

        # fork: the workers need no state but the refs, and fork avoids re-importing __main__
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        step = -(-len(refs) // (workers * 4))
        chunks = [(refs[i:i + step], channels, size) for i in range(0, len(refs), step)]
        with context.Pool(workers) as pool:
            nhwc = np.concatenate(pool.map(_decode_chunk, chunks))
    return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))


def _decode_chunk(task) -> np.ndarray:
    """(refs, channels, (H, W)) -> uint8 (n, H, W, C). Runs in worker processes."""
    from PIL import Image, UnidentifiedImageError

    refs, channels, (height, width) = task
    out = np.empty((len(refs), height, width, channels), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    open_files: dict[str, object] = {}
    try:
        for i, ref in enumerate(refs):
            data = _read_bytes(ref, open_files)
            try:
                with Image.open(io.BytesIO(data)) as decoded:
                    # convert only when needed: a no-op convert still copies (~10% of decode)
                    image = decoded if decoded.mode == mode else decoded.convert(mode)
                    if image.size != (width, height):
                        raise DataError(f"image {ref.name} is {image.size[0]}x{image.size[1]} but the "
                                        f"first image is {width}x{height}; all images of a folder "
                                        "dataset must have the same size. Resize them first.")
                    out[i] = np.asarray(image).reshape(height, width, channels)
            except (UnidentifiedImageError, OSError, ValueError) as err:
                raise DataError(f"cannot decode image {ref.name}: {err}. Remove or replace the file.") from None
    finally:
        for f in open_files.values():
            f.close()
    return out


def _probe(ref: ImageRef) -> tuple[int, int, int]:
    """(C, H, W) of the first image, which sets the dataset's shape."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(_read_bytes(ref, {}))) as image:
            return (1 if image.mode in _GRAY_MODES else 3), image.size[1], image.size[0]
    except OSError as err:
        raise DataError(f"cannot decode image {ref.name}: {err}. Remove or replace the file.") from None


def _read_bytes(ref: ImageRef, open_files: dict) -> bytes:
    if ref.size < 0:
        with open(ref.file, "rb") as f:
            return f.read()
    f = open_files.get(ref.file)
    if f is None:
        f = open_files[ref.file] = open(ref.file, "rb")
    f.seek(ref.offset)
    data = f.read(ref.size)
    if len(data) != ref.size:
        raise DataError(f"{ref.name}: the archive {ref.file} ends early; it is truncated.")
    return data


def _refs_from_dir(path: Path) -> list[ImageRef]:
    root = path
    if not (root / "train").is_dir():
        subdirs = [d for d in path.iterdir() if d.is_dir()]
        if len(subdirs) == 1 and (subdirs[0] / "train").is_dir():
            root = subdirs[0]  # one wrapping folder, as in an extracted tar
    refs = []
    for split in SPLITS:
        split_dir = root / split
        if split_dir.is_dir():
            refs += [ImageRef(str(f), split, class_dir.name, str(f))
                     for class_dir in split_dir.iterdir() if class_dir.is_dir()
                     for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    return _sorted_refs(refs)


def _refs_from_tar(path: Path) -> list[ImageRef]:
    refs, prefixes = [], set()
    for name, offset, size in _tar_files(path):
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if len(parts) < 3 or parts[-3] not in SPLITS or not name.lower().endswith(IMAGE_SUFFIXES):
            continue  # not <split>/<class>/<image>
        prefixes.add(tuple(parts[:-3]))
        refs.append(ImageRef(f"{path}:{name}", parts[-3], parts[-2], str(path), offset, size))
    if len(prefixes) > 1:
        shown = ", ".join(sorted("/".join(p) or "." for p in prefixes)[:5])
        raise DataError(f"the tar archive {path} holds several image trees ({shown}); it must hold "
                        "one: train/<class>/... and test/<class>/..., optionally inside one folder.")
    return _sorted_refs(refs)


def _tar_files(path: Path) -> list[tuple[str, int, int]]:
    """(name, data offset, size) of each regular file; `tarfile` only when the fast scan declines."""
    try:
        listing = scan_tar(path)
        if listing is not None:
            return listing
        with tarfile.open(path, "r:") as tar:
            return [(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.isreg()]
    except tarfile.ReadError:
        raise DataError(f"{path} is a compressed tar; cnnlab reads image trees from an "
                        f"uncompressed .tar (decompress it first, e.g. with gunzip).") from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        raise DataError(f"cannot read the tar archive {path}: {err}; it is truncated or corrupt.") from None


def _sorted_refs(refs: list[ImageRef]) -> list[ImageRef]:
    """A stable order independent of listing order: split, class, then file name (natural)."""
    keys: dict[str, list] = {}

    def natural(text: str):
        key = keys.get(text)
        if key is None:
            key = keys[text] = _natural_key(text)
        return key

    return sorted(refs, key=lambda r: (SPLITS.index(r.split), natural(r.label),
                                       _natural_key(os.path.basename(r.name.replace(":", "/"))), r.name))  # tar refs: "archive:member"


def _natural_key(text: str):
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", text)]


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
