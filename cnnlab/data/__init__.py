"""The data layer: datasets as uint8 arrays, splits and statistics, batches on the device.

    splits = load("mnist", data_dir)            # {"train", "test"} -> ArrayDataset
    prepared = prepare(cfg.data, seed)          # train/val/test, mean/std, classes
    loader = BatchLoader(prepared.train, 128, shuffle=True, mean=prepared.mean,
                         std=prepared.std, augment=("crop", "flip"))
"""

from cnnlab.data.augment import AUGMENTATIONS, check_augment
from cnnlab.data.dataset import ArrayDataset
from cnnlab.data.loader import BatchLoader
from cnnlab.data.registry import describe, load, names, resolve_data_dir
from cnnlab.data.splits import Prepared, channel_stats, prepare, stratified_split, stratified_subset

__all__ = [
    "AUGMENTATIONS", "ArrayDataset", "BatchLoader", "Prepared", "channel_stats", "check_augment",
    "describe", "load", "names", "prepare", "resolve_data_dir", "stratified_split",
    "stratified_subset",
]
