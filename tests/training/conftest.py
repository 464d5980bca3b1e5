"""Fixtures for the training tests: one CPU thread and tiny digits configs."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and a busy second core makes two threads crawl."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_config(tmp_path, one_thread):
    """A few-second run: small_cnn on 300 digits, 3 epochs, runs under tmp_path/runs."""
    from cnnlab.config import load_config

    def make(**overrides):
        base = {
            "data": {"dataset": "digits", "train_limit": 300, "val_fraction": 0.2},
            "model": {"name": "small_cnn"},
            "optim": {"lr": 0.05},
            "schedule": {"name": "cosine"},
            "train": {"epochs": 3, "batch_size": 32, "out": str(tmp_path / "runs"), "name": "tiny"},
        }
        return load_config(base, overrides)

    return make
