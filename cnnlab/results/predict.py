"""Class predictions of a trained run for a dataset split, image files or a folder; CSV output.

Images whose size or mode differ from what the model was trained on are converted (resized,
grey <-> RGB) with a warning; files that cannot be read are listed in `Predictions.skipped`
and do not stop the others.
"""

from __future__ import annotations

import csv
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError
from cnnlab.results.plots import load_run
from cnnlab.utils import atomic_write_text

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Predictions:
    """Probabilities for each input; `ids` are dataset indices or file paths."""

    ids: tuple[str, ...]
    probs: np.ndarray  # (N, K)
    classes: tuple[str, ...]
    true_labels: np.ndarray | None = None  # (N,) when predicting a labelled dataset split
    skipped: tuple[tuple[str, str], ...] = ()  # (file, why it could not be read)
    converted: tuple[str, ...] = field(default=())  # files resized or changed mode

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def accuracy(self) -> float | None:
        if self.true_labels is None or not len(self.ids):
            return None
        return float(np.mean(self.labels == self.true_labels))


def _run_input_shape(run) -> tuple[int, int, int]:
    shape = (getattr(run, "result", None) or {}).get("input_shape")
    if not shape or len(shape) != 3:
        raise DataError(
            f"Run {getattr(run, 'path', run)} does not record an image input shape (C, H, W) in "
            f"result.json (found {shape!r}); cannot convert image files for it."
        )
    return tuple(int(s) for s in shape)


def read_images(paths: list[Path], input_shape: tuple) -> tuple[np.ndarray, list[Path], list, list]:
    """Decode image files to uint8 (N, C, H, W) in the model's size and mode.

    Returns (images, paths read, [(path, reason) skipped], [paths converted]).
    """
    from PIL import Image, UnidentifiedImageError

    channels, height, width = input_shape
    mode = "L" if channels == 1 else "RGB"
    images, read, skipped, converted = [], [], [], []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
                changed = image.mode != mode or image.size != (width, height)
                if image.mode != mode:
                    image = image.convert(mode)
                if image.size != (width, height):
                    image = image.resize((width, height), Image.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            skipped.append((str(path), f"{type(err).__name__}: {err}"))
            continue
        images.append(pixels[None] if pixels.ndim == 2 else np.transpose(pixels, (2, 0, 1)))
        read.append(path)
        if changed:
            converted.append(str(path))
    stacked = np.stack(images) if images else np.zeros((0, *input_shape), dtype=np.uint8)
    return stacked, read, skipped, converted


def _folder_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"--folder {folder} is not a directory.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"Folder {folder} has no image files ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def _probabilities(run, images: np.ndarray, batch_size: int) -> np.ndarray:
    # one call: Run.predict loads the checkpoint and batches internally
    return np.asarray(run.predict(images, batch_size=batch_size), dtype=np.float64)


def predict(run, *, dataset: str | None = None, split: str = "test", files=(), folder=None,
            data_dir=None, batch_size: int = 256) -> Predictions:
    """Predict a dataset split (`dataset=`), image `files` or every image under `folder`.

    With none of them, the run's own dataset (its data directory, `split` default test)."""
    run = load_run(run)
    classes = tuple(run.classes)
    files = list(files or ())
    own = getattr(getattr(run, "config", None), "data", None)
    if not (dataset or files or folder) and own is not None:  # default: the run's own dataset
        dataset = own.dataset
    if own is not None and dataset == own.dataset and data_dir is None:
        data_dir = own.data_dir
    sources = sum(bool(s) for s in (dataset, files, folder))
    if sources != 1:
        raise DataError(
            f"Give exactly one source of images: a dataset (with a split), image files or a folder; "
            f"got dataset={dataset!r}, {len(files)} file(s), folder={folder!r}."
        )
    if dataset:
        from cnnlab import data

        splits = data.load(dataset, data_dir=data_dir)
        if split not in splits:
            raise DataError(f"Dataset '{dataset}' has no split '{split}'; it has {', '.join(sorted(splits))}.")
        chosen = splits[split]
        probs = _probabilities(run, np.asarray(chosen.images), batch_size)
        ids = tuple(str(i) for i in range(len(chosen.labels)))
        return Predictions(ids, probs, classes, true_labels=np.asarray(chosen.labels))

    root = Path(folder) if folder else None
    paths = _folder_files(root) if root else [Path(f) for f in files]
    images, read, skipped, converted = read_images(paths, _run_input_shape(run))
    if converted:
        shape = "x".join(str(s) for s in _run_input_shape(run))
        warnings.warn(
            f"{len(converted)} image(s) had another size or mode and were converted to {shape}: "
            f"{', '.join(converted[:5])}{' ...' if len(converted) > 5 else ''}",
            stacklevel=2,
        )
    if not read:
        listed = "; ".join(f"{p} ({why})" for p, why in skipped[:5])
        raise DataError(f"None of the {len(paths)} image file(s) could be read: {listed}")
    ids = tuple(str(p.relative_to(root)) if root else str(p) for p in read)
    probs = _probabilities(run, images, batch_size)
    return Predictions(ids, probs, classes, skipped=tuple(skipped), converted=tuple(converted))


def csv_text(predictions: Predictions, kaggle: bool = False) -> str:
    """The CSV: `id,label,class[,true_label,true_class],p_<class>...`, or Kaggle's `ImageId,Label`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    labels = predictions.labels
    if kaggle:  # Kaggle's submission format: 1-based ids, the class name (digits: "0".."9")
        writer.writerow(["ImageId", "Label"])
        names = predictions.classes
        writer.writerows([i + 1, names[label] if names else int(label)] for i, label in enumerate(labels))
        return buffer.getvalue()
    classes = predictions.classes
    truth = predictions.true_labels
    header = ["id", "label", "class"] + (["true_label", "true_class"] if truth is not None else [])
    writer.writerow(header + [f"p_{c}" for c in classes])
    for i, (sample_id, label) in enumerate(zip(predictions.ids, labels)):
        row = [sample_id, int(label), classes[label]]
        if truth is not None:
            row += [int(truth[i]), classes[int(truth[i])]]
        writer.writerow(row + [f"{p:.6f}" for p in predictions.probs[i]])
    return buffer.getvalue()


def write_csv(predictions: Predictions, path, kaggle: bool = False) -> Path:
    """Write the CSV atomically."""
    return atomic_write_text(path, csv_text(predictions, kaggle=kaggle))
