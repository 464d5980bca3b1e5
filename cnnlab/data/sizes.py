"""Checks that the splits `prepare` made are big enough to train on and to pick a best epoch.

Kept apart from the splitting itself: `prepare` calls `check_split_sizes` once, after
`train_limit` and `val_fraction` are applied. The rules (errors, no silent fallback):

- the training split needs at least 2 samples (one sample cannot form a BatchNorm batch);
- every class needs at least one training sample, else its output is never trained;
- `val_fraction > 0` must give at least one validation sample, else no epoch can be chosen as
  the best, so the run would end with no best checkpoint and no test accuracy. With
  `val_fraction: 0` (and `train.monitor` `train_loss`/`train_acc`) there is no validation set
  by choice, and the best epoch is picked on the training metric.
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab.errors import ConfigError

MIN_TRAIN_SAMPLES = 2


def check_split_sizes(train, val, *, val_fraction: float, train_limit: int | None) -> None:
    """Raise ConfigError when the train/val splits (ArrayDatasets) cannot give a usable run."""
    settings = (f"data.train_limit={train_limit}" if train_limit is not None else "the full training set") + \
        f" with data.val_fraction={val_fraction}"
    n_train, n_classes = len(train), len(train.classes)
    if n_train < MIN_TRAIN_SAMPLES:
        raise ConfigError(
            f"{settings} leaves {n_train} training sample(s); training needs at least "
            f"{MIN_TRAIN_SAMPLES} (a single sample cannot form a batch for BatchNorm). Raise "
            "data.train_limit (or leave it null), or lower data.val_fraction."
        )
    present = set(np.unique(train.labels).tolist())
    missing = [name for i, name in enumerate(train.classes) if i not in present]
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ConfigError(
            f"{settings} leaves {n_train} training samples for {n_classes} classes: {len(missing)} "
            f"class(es) ({shown}) have no training sample, so their outputs would never be trained. "
            f"Raise data.train_limit to well above {n_classes} (or leave it null)."
        )
    if val_fraction > 0 and len(val) == 0:
        total = n_train + len(val)
        if train_limit is not None:
            fix = f"Raise data.train_limit (to at least {math.ceil(1 / val_fraction)}) or data.val_fraction"
        else:
            fix = f"Raise data.val_fraction (to at least {1 / total:.3g})"
        raise ConfigError(
            f"{settings} gives an empty validation split ({val_fraction} of {total} samples rounds "
            "to 0), so no best epoch could be chosen and the run would end with no best checkpoint "
            f"and no test accuracy. {fix}, or set data.val_fraction: 0 with train.monitor: "
            "train_loss to train without a validation set."
        )
