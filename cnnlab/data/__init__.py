"""The data layer: datasets as uint8 arrays, splits and statistics, batches on the device.

    splits = load("mnist", data_dir)            # {"train", "test"} -> ArrayDataset
    prepared = prepare(cfg.data, seed)          # train/val/test, mean/std, classes
    loader = BatchLoader(prepared.train, 128, shuffle=True, mean=prepared.mean,
                         std=prepared.std, augment=("crop", "flip"))

Names are imported on first use, so `cnnlab datasets` does not pay for importing torch.
"""

from __future__ import annotations

import importlib

# public name -> module
_EXPORTS = {
    "AUGMENTATIONS": "cnnlab.data.augment",
    "check_augment": "cnnlab.data.augment",
    "ArrayDataset": "cnnlab.data.dataset",
    "BatchLoader": "cnnlab.data.loader",
    "describe": "cnnlab.data.registry",
    "load": "cnnlab.data.registry",
    "names": "cnnlab.data.registry",
    "resolve_data_dir": "cnnlab.data.registry",
    "resolve_cache_dir": "cnnlab.data.registry",
    "Prepared": "cnnlab.data.preparation",
    "channel_stats": "cnnlab.data.preparation",
    "prepare": "cnnlab.data.preparation",
    "stratified_split": "cnnlab.data.splits",
    "stratified_subset": "cnnlab.data.splits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnlab.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
