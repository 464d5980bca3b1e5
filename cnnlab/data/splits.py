"""Seeded stratified subsets and splits: index math on label arrays, nothing loaded here."""

from __future__ import annotations

import numpy as np

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
