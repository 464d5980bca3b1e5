"""A tiny real run folder (mlp on 300 `digits` images, 2 epochs), trained once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    import cnnlab

    config = {
        "data": {"dataset": "digits", "train_limit": 300},
        "train": {"epochs": 2, "batch_size": 64},
        "model": {"name": "mlp"},
    }
    return cnnlab.train(config, out=tmp_path_factory.mktemp("runs"), quiet=True, plots=False)
