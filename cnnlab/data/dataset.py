"""`ArrayDataset`: the plain data that crosses from the data layer to the batch iterator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.errors import DataError


@dataclass(frozen=True, eq=False)  # == on arrays is ambiguous: compare fields explicitly
class ArrayDataset:
    """Images, labels and class names held in memory.

    images: uint8 (N, C, H, W); labels: int64 (N,) with values in [0, len(classes));
    classes: tuple of str, index i is the name of label i.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self):
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                "ArrayDataset needs images as a uint8 array of shape (N, C, H, W); received "
                f"{_describe_array(images)}. Convert with images.astype(np.uint8) and add the "
                "channel axis with images[:, None] for grayscale data."
            )
        if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(
                "ArrayDataset needs labels as a 1-D integer array of shape (N,); received "
                f"{_describe_array(labels)}."
            )
        if len(labels) != len(images):
            raise DataError(
                f"ArrayDataset got {len(images)} images but {len(labels)} labels; each image "
                "needs exactly one label."
            )
        classes = tuple(str(c) for c in self.classes)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(
                f"ArrayDataset labels range from {labels.min()} to {labels.max()}, but there are "
                f"{len(classes)} class name(s) {classes[:12]}; labels must lie in "
                f"[0, {len(classes)})."
            )
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(int(d) for d in self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray) -> "ArrayDataset":
        """The samples at `indices` (1-D int array), in that order, as a new dataset."""
        indices = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(self.images[indices], self.labels[indices], self.classes)

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(images={self.images.dtype}{tuple(self.images.shape)}, "
            f"labels={self.labels.dtype}{tuple(self.labels.shape)}, classes={len(self.classes)})"
        )


def _describe_array(value) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
