"""Checks of a run's set-up that need both the model tree and the training config.

`build_session` calls `check_batches` before it builds the engine, so an impossible
combination is a ConfigError naming the setting, not a crash inside a layer.
"""

from __future__ import annotations

from cnnlab.errors import ConfigError

BATCHNORM = ("BatchNorm1d", "BatchNorm2d")


def check_batches(node, batch_size: int, n_train: int) -> None:
    """BatchNorm needs at least 2 samples in every training batch.

    The trainer drops a ragged last batch when the training split has more samples than one
    batch, and the data checks (`cnnlab.data.sizes`) guarantee at least 2 training samples, so
    only `train.batch_size: 1` is left to refuse.
    """
    names = [path for path, n in node.walk() if n.kind in BATCHNORM]
    if names and min(batch_size, n_train) < 2:
        shown = ", ".join(f"'{p}'" for p in names[:5]) + (" ..." if len(names) > 5 else "")
        raise ConfigError(
            f"train.batch_size={batch_size} gives training batches of one sample, but the model has "
            f"BatchNorm layers ({shown}), which need at least 2 samples per batch in training. Use "
            "train.batch_size >= 2, or a model without BatchNorm (e.g. the zoo option bn: false)."
        )
