"""`prepare`: a data config becomes the three splits a run uses plus their normalisation.

Load the dataset (`cnnlab.data.registry`), keep a stratified `train_limit` subset, carve the
validation split from train (`cnnlab.data.splits`), and compute the per-channel mean/std on
the training split only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.data.augment import check_augment
from cnnlab.data.dataset import ArrayDataset
from cnnlab.data.registry import load
from cnnlab.data.sizes import check_split_sizes
from cnnlab.data.splits import stratified_split, stratified_subset
from cnnlab.errors import ConfigError, DataError


def channel_stats(images_u8: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of uint8 images (N, C, H, W), in [0, 1] units.

    Computed exactly from a 256-bin histogram per channel (fast, no float32 drift).
    """
    if not isinstance(images_u8, np.ndarray) or images_u8.dtype != np.uint8 or images_u8.ndim != 4:
        shape = getattr(images_u8, "shape", None)
        raise DataError(f"channel_stats needs uint8 images of shape (N, C, H, W); received "
                        f"{getattr(images_u8, 'dtype', type(images_u8).__name__)} of shape {shape}.")
    if images_u8.shape[0] == 0:
        raise DataError("channel_stats needs at least one image; received an empty array.")
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images_u8.shape[1]):
        hist = np.bincount(images_u8[:, c].ravel(), minlength=256).astype(np.float64)
        total = hist.sum()
        mean = hist @ values / total
        var = hist @ (values - mean) ** 2 / total
        means.append(float(mean))
        stds.append(float(np.sqrt(var)))
    return tuple(means), tuple(stds)


@dataclass(frozen=True, eq=False)
class Prepared:
    """The splits of one run and their normalisation (mean/std per channel, [0, 1] units)."""

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]
    num_classes: int


def prepare(data_cfg, seed: int) -> Prepared:
    """Load `data_cfg.dataset`, limit and split train, compute normalisation.

    data_cfg: any object with `dataset`, `data_dir`, `train_limit` (None or int),
    `val_fraction` (float in [0, 1)), `normalize` (bool), `augment` (names), `download` (bool).
    """
    check_augment(getattr(data_cfg, "augment", ()) or ())
    splits = load(data_cfg.dataset, getattr(data_cfg, "data_dir", None),
                  download=getattr(data_cfg, "download", True))
    train, test = splits["train"], splits["test"]
    limit = getattr(data_cfg, "train_limit", None)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ConfigError(f"data.train_limit must be a positive whole number or null; received {limit!r}.")
        train = train.subset(stratified_subset(train.labels, int(limit), seed))
    fraction = getattr(data_cfg, "val_fraction", 0.1)
    keep, val_idx = stratified_split(train.labels, fraction, seed)
    if len(keep) == 0:
        raise ConfigError(f"data.val_fraction={fraction} leaves no training samples out of {len(train)}; "
                          "lower it or raise data.train_limit.")
    train, val = train.subset(keep), train.subset(val_idx)
    check_split_sizes(train, val, val_fraction=fraction, train_limit=limit)
    test_limit = getattr(data_cfg, "test_limit", None)
    if test_limit is not None:  # a quick check's shortcut: the subset is stratified and seeded
        test = test.subset(stratified_subset(test.labels, int(test_limit), seed))
    if getattr(data_cfg, "normalize", True):
        mean, std = channel_stats(train.images)
        # a constant channel would divide by zero; leave it unscaled
        std = tuple(s if s > 0 else 1.0 for s in std)
    else:
        channels = train.input_shape[0]
        mean, std = (0.0,) * channels, (1.0,) * channels
    return Prepared(train=train, val=val, test=test, mean=mean, std=std, classes=train.classes,
                    input_shape=train.input_shape, num_classes=len(train.classes))
