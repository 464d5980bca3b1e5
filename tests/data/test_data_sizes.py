"""Tiny training sets are refused with a clear error before training starts (issue 12, C)."""

import pytest

from cnnlab.config import load_config
from cnnlab.data import prepare
from cnnlab.errors import ConfigError


def data_cfg(**data):
    return load_config({"data": {"dataset": "digits", **data},
                        "train": {"monitor": "train_loss"} if data.get("val_fraction") == 0 else {}}).data


@pytest.mark.parametrize("data, message", [
    ({"train_limit": 1}, r"data.train_limit=1 with data.val_fraction=0.1 leaves 1 training sample\(s\); "
                         r"training needs at least 2"),
    ({"train_limit": 1, "val_fraction": 0}, r"leaves 1 training sample"),
    ({"train_limit": 5}, r"leaves 5 training samples for 10 classes: 5 class\(es\) \('\d', .*\) "
                         r"have no training sample"),
    ({"train_limit": 12, "val_fraction": 0.02}, r"gives an empty validation split \(0.02 of 12 samples rounds "
                                                r"to 0\).*no best checkpoint.*Raise data.train_limit \(to at least 50\)"),
])
def test_tiny_splits_are_clear_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        prepare(data_cfg(**data), seed=0)


def test_smallest_workable_splits_pass():
    prepared = prepare(data_cfg(train_limit=12, val_fraction=0.1), seed=0)
    assert len(prepared.train) == 11 and len(prepared.val) == 1
    assert set(prepared.train.labels.tolist()) == set(range(10))
    # no validation set by choice: allowed, the best epoch is picked on a training metric
    prepared = prepare(data_cfg(train_limit=10, val_fraction=0), seed=0)
    assert len(prepared.train) == 10 and len(prepared.val) == 0
