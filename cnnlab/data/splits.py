"""Seeded stratified subsets and splits, per-channel statistics, and `prepare`.

`prepare` turns a data config into the three splits a run uses plus their normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.data.dataset import ArrayDataset
from cnnlab.errors import ConfigError, DataError


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of `n` samples whose class proportions follow `labels` (N,); sorted, seeded.

    Each class gets its share rounded by largest remainder, so the total is exactly `n`
    (all indices when n >= N).
    """
    labels = np.asarray(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise DataError(f"a stratified subset needs a non-negative whole number of samples; received {n!r}.")
    if n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = _largest_remainder(counts, n)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
              for c, q in zip(classes, quotas) if q]
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep_idx, split_idx): `fraction` of the samples, stratified by label, go to the split.

    fraction 0 gives an empty split. Both index arrays are sorted and disjoint.
    """
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction < 1:
        raise ConfigError(f"a split fraction must be a number in [0, 1); received {fraction!r}. "
                          "Use e.g. 0.1 for a 10% validation split, or 0 for none.")
    labels = np.asarray(labels)
    split = stratified_subset(labels, int(round(fraction * len(labels))), seed)
    keep = np.setdiff1d(np.arange(len(labels), dtype=np.int64), split, assume_unique=True)
    return keep, split


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
    from cnnlab.data.augment import check_augment
    from cnnlab.data.registry import load
    from cnnlab.data.sizes import check_split_sizes

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
    if getattr(data_cfg, "normalize", True):
        mean, std = channel_stats(train.images)
        # a constant channel would divide by zero; leave it unscaled
        std = tuple(s if s > 0 else 1.0 for s in std)
    else:
        channels = train.input_shape[0]
        mean, std = (0.0,) * channels, (1.0,) * channels
    return Prepared(train=train, val=val, test=test, mean=mean, std=std, classes=train.classes,
                    input_shape=train.input_shape, num_classes=len(train.classes))


def _largest_remainder(counts: np.ndarray, n: int) -> np.ndarray:
    """Split `n` over classes in proportion to `counts`; ties go to the earlier class."""
    exact = counts * (n / counts.sum())
    quotas = np.minimum(np.floor(exact).astype(np.int64), counts)
    short = n - quotas.sum()
    order = np.argsort(-(exact - quotas), kind="stable")
    for i in order:
        if short == 0:
            break
        if quotas[i] < counts[i]:
            quotas[i] += 1
            short -= 1
    return quotas
