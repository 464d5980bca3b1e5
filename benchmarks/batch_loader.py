"""Per-batch cost of `BatchLoader` against a bare permutation + slicing loop and
`DataLoader(TensorDataset)` on the same in-memory images.

    python benchmarks/batch_loader.py [--cifar]

Interleaved rounds (one epoch of each variant per round), one torch thread, CPU time of that
thread (robust on a shared machine); medians in µs per batch; the ratio to DataLoader last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlab.data import ArrayDataset, BatchLoader  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", action="store_true", help="3x32x32 images instead of 1x28x28")
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)

    shape = (3, 32, 32) if args.cifar else (1, 28, 28)
    rng = np.random.default_rng(0)
    n, b = args.samples, args.batch_size
    data = ArrayDataset(rng.integers(0, 256, (n, *shape), dtype=np.uint8),
                        rng.integers(0, 10, n).astype(np.int64), tuple("0123456789"))
    mean, std = (0.13,) * shape[0], (0.31,) * shape[0]
    images, labels = torch.from_numpy(data.images), torch.from_numpy(data.labels)
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def bare(epoch):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for i in range(0, n, b):
            idx = perm[i:i + b]
            yield images.index_select(0, idx).float().div_(255).sub_(m).div_(s), labels.index_select(0, idx)

    def loader(**kwargs):
        batches = BatchLoader(data, b, shuffle=True, mean=mean, std=std, **kwargs)

        def epoch_iter(epoch):
            batches.set_epoch(epoch)
            return iter(batches)
        return epoch_iter

    normalised = TensorDataset(images.float().div(255).sub(m).div(s), labels)
    data_loader = DataLoader(normalised, batch_size=b, shuffle=True)
    variants = {
        "bare permutation + slice + normalise": bare,
        "BatchLoader": loader(),
        "BatchLoader crop+flip": loader(augment=("crop", "flip")),
        "DataLoader(TensorDataset)": lambda epoch: iter(data_loader),
    }
    times = {name: [] for name in variants}
    for epoch in range(args.rounds):
        for name, make in variants.items():
            batches = make(epoch)
            start = time.thread_time()
            count = sum(1 for _ in batches)
            times[name].append((time.thread_time() - start) / count * 1e6)
    medians = {name: statistics.median(v) for name, v in times.items()}
    print(f"images {shape}, batch {b}, {n} samples, median of {args.rounds} interleaved rounds, "
          "CPU time of 1 torch thread")
    for name, value in medians.items():
        print(f"  {name:38s} {value:8.1f} us/batch")
    print(f"ratio BatchLoader / bare loop: {medians['BatchLoader'] / medians['bare permutation + slice + normalise']:.2f}")
    print(f"ratio DataLoader(TensorDataset) / BatchLoader: {medians['DataLoader(TensorDataset)'] / medians['BatchLoader']:.2f}")


if __name__ == "__main__":
    main()
