"""Harness overhead: cnnlab's fit loop (with every callback train() uses) vs a bare PyTorch loop.

Both train the same model (same initial weights, channels_last on CPU) on the same BatchLoader
batches and evaluate the same validation set once per epoch. Repeats are interleaved
(bare/fit, then fit/bare, ...) so machine noise hits both alike. Both wall time and this
process's CPU time are measured: on a shared machine other processes inflate wall time at
random, while CPU time counts only the work done here. The last line prints the median ratios
cnnlab / bare. Target: <= 1.05.

`--allocator` instead measures the glibc allocator tuning (cnnlab.training.runtime.
tune_allocator): the bare loop in fresh child processes with and without it, interleaved; the median ratio
of CPU seconds untuned / tuned is printed last (> 1 means the tuning helps).

    python benchmarks/harness_overhead.py [--data-dir ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
# idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# made 2-thread training 10x slower (must be set before torch loads OpenMP)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from torch import nn

from cnnlab.config import load_config
from cnnlab.data import ArrayDataset, BatchLoader, load
from cnnlab.models import build
from cnnlab.engines.optim import build_scheduler
from cnnlab.engines.torch_engine import TorchEngine
from cnnlab.runs import RunLog
from cnnlab.training import fit
from cnnlab.training.trainer import Session, _standard_callbacks


def _dataset(data_dir: str | None, n: int) -> ArrayDataset:
    """MNIST's first n training images when a data dir is given, else seeded synthetic 28x28."""
    if data_dir:
        train = load("mnist", data_dir, download=False)["train"]
        return train.subset(np.arange(n))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 64, (n, 1, 28, 28), dtype=np.uint8)
    for k in range(10):  # a class-dependent bright stripe makes the task learnable
        images[labels == k, 0, 2 * k:2 * k + 4, :] += 150
    return ArrayDataset(images, labels, tuple(str(k) for k in range(10)))


def _setup(config, train_set, val_set):
    torch.manual_seed(0)
    model = build("small_cnn", (1, 28, 28), 10)
    engine = TorchEngine(model, config.optim, device="cpu")
    args = dict(mean=(0.2,), std=(0.3,), channels_last=engine.channels_last)
    train_loader = BatchLoader(train_set, config.train.batch_size, shuffle=True, drop_last=True, **args)
    val_loader = BatchLoader(val_set, 512, shuffle=False, **args)
    scheduler = build_scheduler(engine.optimizer, config.schedule, len(train_loader), config.train.epochs)
    return engine, train_loader, val_loader, scheduler


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clocks()
    return wall - start[0], cpu - start[1]


def bare_loop(engine, train_loader, val_loader, scheduler, epochs: int) -> tuple[float, float]:
    """What one writes by hand: forward, loss, backward, step, running loss/accuracy, val pass."""
    model, optimizer, loss_fn = engine.model, engine.optimizer, nn.CrossEntropyLoss()
    start = _clocks()
    for epoch in range(1, epochs + 1):
        train_loader.set_epoch(epoch)
        model.train()
        total, correct = 0.0, 0
        for x, y in train_loader:
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * y.shape[0]
            correct += int((logits.argmax(1) == y).sum())
        model.eval()
        with torch.no_grad():
            val_correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in val_loader)
    return _since(start)


def cnnlab_fit(config, engine, train_loader, val_loader, scheduler, epochs: int) -> tuple[float, float]:
    """cnnlab's fit with train()'s callbacks: CSV, best/last checkpoints, timer, NaN guard, log."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        session = Session(config, None, engine, train_loader, val_loader, None, scheduler, 0, 0, None)
        callbacks = _standard_callbacks(session, run_dir, RunLog(run_dir / "log.txt"), quiet=True)
        start = _clocks()
        fit(engine, train_loader, val_loader, epochs, scheduler, callbacks)
        return _since(start)


def measure_overhead(args) -> None:
    config = load_config({"train": {"epochs": args.epochs, "batch_size": 128},
                          "schedule": {"name": "cosine"}})
    data = _dataset(args.data_dir, args.samples + 2000)
    train_set, val_set = data.subset(np.arange(args.samples)), data.subset(np.arange(args.samples, len(data)))
    wall_ratios, cpu_ratios = [], []
    for rep in range(args.repeats):
        order = ("bare", "fit") if rep % 2 == 0 else ("fit", "bare")  # no first-mover bias
        times = {}
        for which in order:
            parts = _setup(config, train_set, val_set)
            run = bare_loop if which == "bare" else partial(cnnlab_fit, config)
            times[which] = run(*parts, args.epochs)
        (bare_wall, bare_cpu), (fit_wall, fit_cpu) = times["bare"], times["fit"]
        wall_ratios.append(fit_wall / bare_wall)
        cpu_ratios.append(fit_cpu / bare_cpu)
        print(f"repeat {rep + 1}: wall bare {bare_wall:.2f} s, fit {fit_wall:.2f} s "
              f"(ratio {wall_ratios[-1]:.3f}); cpu bare {bare_cpu:.2f} s, fit {fit_cpu:.2f} s "
              f"(ratio {cpu_ratios[-1]:.3f})", flush=True)
    print(f"threads {torch.get_num_threads()}, {args.samples} images x {args.epochs} epoch(s), "
          f"{args.repeats} interleaved repeats, load average {os.getloadavg()[0]:.1f}")
    print(f"harness overhead ratio (cnnlab fit / bare loop, median of {args.repeats}): "
          f"wall {statistics.median(wall_ratios):.3f}, cpu {statistics.median(cpu_ratios):.3f}")


def child_bare(args) -> None:
    if args.child == "tuned":
        from cnnlab.training.runtime import tune_allocator

        assert tune_allocator()
    config = load_config({"train": {"epochs": args.epochs, "batch_size": 128}})
    data = _dataset(args.data_dir, args.samples + 2000)
    parts = _setup(config, data.subset(np.arange(args.samples)),
                   data.subset(np.arange(args.samples, len(data))))
    print(bare_loop(*parts, args.epochs)[1])  # CPU seconds


def measure_allocator(args) -> None:
    ratios = []
    for rep in range(args.repeats):
        times = {}
        for mode in ("plain", "tuned") if rep % 2 == 0 else ("tuned", "plain"):
            cmd = [sys.executable, __file__, "--child", mode, "--samples", str(args.samples),
                   "--epochs", str(args.epochs), "--threads", str(args.threads)]
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            times[mode] = float(out.strip().splitlines()[-1])
        ratios.append(times["plain"] / times["tuned"])
        print(f"repeat {rep + 1}: cpu default malloc {times['plain']:.2f} s, tuned {times['tuned']:.2f} s, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    print(f"allocator tuning speed-up (default / tuned, median of {args.repeats}): "
          f"{statistics.median(ratios):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="directory with mnist/ (default: synthetic images)")
    parser.add_argument("--samples", type=int, default=5000, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--allocator", action="store_true", help="measure the allocator tuning")
    parser.add_argument("--child", choices=("plain", "tuned"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child_bare(args)
    elif args.allocator:
        measure_allocator(args)
    else:
        measure_overhead(args)


if __name__ == "__main__":
    main()
