"""CIFAR-10 time-to-accuracy on the CPU: the fast recipe against the classic lab recipe.

    python benchmarks/cifar_time_to_accuracy.py --data-dir ../shared/data [--seeds 3]
        [--classic-epochs 30] [--threads 2] [--set KEY=VALUE ...]

In one invocation, on `--threads` CPU threads:
- trains `examples/cifar10_fast.yaml` over `--seeds` seeds, and the classic lab recipe once
  (simple_cnn, Adam 1e-3, step schedule halving every 10 epochs, crop + flip + rotate, batch
  128, `--classic-epochs` epochs);
- prints, for each run, validation accuracy against cumulative training seconds (the epochs'
  wall time, validation pass included), the seconds to reach 75% validation accuracy, and the
  final test accuracy (the test set is evaluated once, at the end, from the best checkpoint);
- prints the fast recipe's achieved training FLOP/s against this machine's dense float32 matmul
  peak measured in the same run (training FLOPs = 3 x 2 x MACs per image x images trained: a
  backward pass costs about twice the forward; the MAC counter is cnnlab.models');
- prints last the ratio of the fast recipe's time-to-75% (median over seeds) to the classic's.
Targets on 2 cores: fast >= 90.0% test accuracy (mean of 3 seeds) within 600 s of training;
time-to-75% ratio <= 0.25; >= 40% of the matmul peak. CIFAR-10 is the JPEG copy in
`cifar10-jpg.tar` (slightly lossy). Absolute seconds move 30% between machines and with load:
the load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import torch  # noqa: E402

from cnnlab.config import load_config  # noqa: E402
from cnnlab.training import train  # noqa: E402

TARGET_VAL = 0.75
FAST_RECIPE = ROOT / "examples" / "cifar10_fast.yaml"
CLASSIC = {
    "data": {"dataset": "folder:cifar10-jpg.tar", "augment": ["crop", "flip", "rotate"]},
    "model": {"name": "simple_cnn"},
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    "schedule": {"name": "step", "step_size": 10, "gamma": 0.5},
    "train": {"batch_size": 128, "name": "classic"},
}


def matmul_peak(threads: int, size: int = 2048, repeats: int = 7) -> float:
    """Dense float32 matmul FLOP/s on `threads` threads (median of `repeats`)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    torch.set_num_threads(previous)
    return 2 * size**3 / statistics.median(times)


def curve(run) -> list[tuple[float, float]]:
    """(cumulative training seconds, validation accuracy) after each epoch."""
    seconds, points = 0.0, []
    for row in run.metrics:
        seconds += float(row["epoch_s"])
        points.append((seconds, float(row["val_acc"])))
    return points


def time_to(points, target: float) -> float | None:
    return next((s for s, acc in points if acc >= target), None)


def run_one(label: str, config) -> dict:
    load = os.getloadavg()[0]
    run = train(config)
    points = curve(run)
    r = run.result
    images = r["train_samples"] // config.train.batch_size * config.train.batch_size * r["epochs_run"]
    epochs_s = sum(float(row["epoch_s"]) for row in run.metrics)  # validation passes included
    return {"label": label, "points": points, "t75": time_to(points, TARGET_VAL), "test": r["test_acc"],
            "train_s": r["train_s"], "epoch_s": epochs_s, "flops": 6 * r["macs"] * images,
            "load": (load, os.getloadavg()[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="directory with cifar10-jpg.tar")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the fast recipe (default 3)")
    parser.add_argument("--classic-epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-classic", action="store_true", help="only the fast recipe (no ratio)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the fast recipe, e.g. --set train.epochs=8")
    args = parser.parse_args()
    peak = matmul_peak(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as out:
        common = [f"train.threads={args.threads}", f"train.out={out}", f"data.data_dir={args.data_dir}"]
        for seed in range(args.seeds):
            config = load_config(FAST_RECIPE, [*common, f"train.seed={seed}", *args.set])
            rows.append(run_one(f"fast seed {seed}", config))
        if not args.skip_classic:
            config = load_config(CLASSIC, [*common, f"train.epochs={args.classic_epochs}"])
            rows.append(run_one("classic", config))
    for row in rows:
        curve_text = ", ".join(f"{s:.0f}s:{100 * a:.1f}%" for s, a in row["points"])
        t75 = f"{row['t75']:.1f} s" if row["t75"] is not None else "not reached"
        print(f"{row['label']}: test {100 * row['test']:.2f}%, {row['train_s']:.1f} s of training, "
              f"time to {100 * TARGET_VAL:.0f}% val {t75}; load {row['load'][0]:.1f} -> "
              f"{row['load'][1]:.1f}\n  val acc vs seconds: {curve_text}")
    fast = [r for r in rows if r["label"].startswith("fast")]
    accs = [r["test"] for r in fast]
    print(f"fast recipe: test {100 * statistics.mean(accs):.2f}% mean of {len(accs)} seed(s)"
          + (f" (± {100 * statistics.stdev(accs):.2f})" if len(accs) > 1 else "")
          + f", {statistics.mean(r['train_s'] for r in fast):.1f} s of training per run (target >= 90.0% in 600 s)")
    achieved = statistics.median(r["flops"] / r["epoch_s"] for r in fast)
    print(f"fast recipe training FLOP/s: {achieved / 1e9:.1f} GFLOP/s against a matmul peak of "
          f"{peak / 1e9:.1f} GFLOP/s on {args.threads} threads: {100 * achieved / peak:.0f}% "
          "(epoch time includes validation, so this understates the training pass)")
    classic = next((r for r in rows if r["label"] == "classic"), None)
    t_fast = [r["t75"] for r in fast if r["t75"] is not None]
    if classic is None or classic["t75"] is None or not t_fast:
        print("time-to-75% ratio (fast / classic): not measured (a recipe did not reach 75% or was skipped)")
    else:
        print(f"time-to-75% ratio (fast / classic): {statistics.median(t_fast) / classic['t75']:.3f}")


if __name__ == "__main__":
    main()
