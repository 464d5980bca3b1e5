"""CIFAR-10 time-to-accuracy on the CPU: the fast recipe against the classic lab recipe.

    python benchmarks/cifar_time_to_accuracy.py --data-dir ../shared/data [--seeds 3]
        [--classic-epochs 30] [--threads 2] [--profile NAME] [--set KEY=VALUE ...]

In one invocation, on `--threads` CPU threads:
- trains `examples/cifar10_fast.yaml` (with `--profile`, one of its profiles: `no_amx` on a
  CPU without native bf16) over `--seeds` seeds, and the classic lab recipe once
  (simple_cnn, Adam 1e-3, step schedule halving every 10 epochs, crop + flip + rotate, batch
  128, `--classic-epochs` epochs);
- prints, for each run, validation accuracy against cumulative training seconds (the training
  passes' wall time; the validation passes are not counted, their total is printed beside),
  the seconds to reach 75% validation accuracy, and the final test accuracy (the test set is
  evaluated once, at the end, from the best checkpoint);
- prints the fast recipe's achieved training FLOP/s (training FLOPs over the training passes'
  seconds) against this machine's dense matmul peak in the precision the recipe trains at
  (bf16 with `train.amp: true`, else float32), measured in the same run before and after
  training (the best of 1024/2048/4096 squares, median of 7 each). Training FLOPs per image are
  measured by torch.utils.flop_counter on one forward + backward of the recipe's model, and
  printed beside cnnlab's MAC counter's estimate (6 x conv/linear MACs: the counter is exact
  for the forward; the first layer needs no input gradient, so 6x overstates it slightly);
- prints last the ratio of the fast recipe's time-to-75% (median over seeds) to the classic's.
Targets on 2 cores: fast >= 90.0% test accuracy (mean of 3 seeds) within 600 s of training;
time-to-75% ratio <= 0.25; >= 40% of the matmul peak. CIFAR-10 is the JPEG copy in
`cifar10-jpg.tar` (slightly lossy). Absolute seconds move 30% between machines and with load:
the load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import os
import platform
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
from cnnlab.engines.torch_engine import cpu_has_bf16  # noqa: E402
from cnnlab.training import Callback, train  # noqa: E402

TARGET_VAL = 0.75
FAST_RECIPE = ROOT / "examples" / "cifar10_fast.yaml"
CLASSIC = {
    "data": {"dataset": "folder:cifar10-jpg.tar", "augment": ["crop", "flip", "rotate"]},
    "model": {"name": "simple_cnn"},
    "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    "schedule": {"name": "step", "step_size": 10, "gamma": 0.5},
    "train": {"batch_size": 128, "name": "classic"},
}


def matmul_peak(threads: int, dtype=torch.float32, sizes=(1024, 2048, 4096), repeats: int = 7) -> float:
    """Dense matmul FLOP/s in `dtype` on `threads` threads: the best size's median of `repeats`."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        torch.mm(a, b)  # warm up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        best = max(best, 2 * size**3 / statistics.median(times))
    torch.set_num_threads(previous)
    return best


def training_flops_per_image(config) -> tuple[float, float]:
    """FLOPs of one training step per image: (measured by torch's flop counter on the recipe's
    model, forward, loss and backward of a batch of 4; cnnlab's estimate, 6 x conv/linear MACs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cnnlab import engines, models

    node = models.resolve(config.model.name, (3, 32, 32), 10, **config.model.resolved_options())
    model = engines.get("torch").build_model(node)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 4, 6 * node.conv_linear_macs()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class TrainingSeconds(Callback):
    """(cumulative training-pass seconds, validation accuracy) after each epoch: the x axis
    counts training only, not the validation passes (which TTA makes several times dearer)."""

    def __init__(self):
        self.seconds, self.points = 0.0, []

    def on_epoch_end(self, epoch, logs):
        self.seconds += logs["train_s"]
        self.points.append((self.seconds, logs["val_acc"]))


def time_to(points, target: float) -> float | None:
    return next((s for s, acc in points if acc >= target), None)


def run_one(label: str, config) -> dict:
    load = os.getloadavg()[0]
    seconds = TrainingSeconds()
    run = train(config, callbacks=[seconds])
    points = seconds.points
    with_validation = sum(float(row["epoch_s"]) for row in run.metrics)
    r = run.result
    images = r["train_samples"] // config.train.batch_size * config.train.batch_size * r["epochs_run"]
    return {"label": label, "points": points, "t75": time_to(points, TARGET_VAL), "test": r["test_acc"],
            "train_s": r["train_s"], "epoch_s": with_validation, "images": images, "precision": r["features"]["precision"],
            "load": (load, os.getloadavg()[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="directory with cifar10-jpg.tar")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the fast recipe (default 3)")
    parser.add_argument("--classic-epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-classic", action="store_true", help="only the fast recipe (no ratio)")
    parser.add_argument("--profile", default=None,
                        help="a profile of the fast recipe, e.g. no_amx on a CPU without native bf16")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the fast recipe, e.g. --set train.epochs=8")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), native bf16 (AMX or AVX512-BF16): "
          f"{'yes' if cpu_has_bf16() else 'no'}; load {os.getloadavg()[0]:.2f}")
    # bf16 without AMX or AVX512-BF16 is emulated: its "peak" would only cost minutes
    dtypes = {"float32": torch.float32, **({"bf16": torch.bfloat16} if cpu_has_bf16() else {})}
    peaks = {name: [matmul_peak(args.threads, dtype)] for name, dtype in dtypes.items()}
    rows = []
    with tempfile.TemporaryDirectory() as out:
        common = [f"train.threads={args.threads}", f"train.out={out}", f"data.data_dir={args.data_dir}"]
        for seed in range(args.seeds):
            config = load_config(FAST_RECIPE, [*common, f"train.seed={seed}", *args.set], profile=args.profile)
            rows.append(run_one(f"fast seed {seed}", config))
        if not args.skip_classic:
            config = load_config(CLASSIC, [*common, f"train.epochs={args.classic_epochs}"])
            rows.append(run_one("classic", config))
        fast_config = load_config(FAST_RECIPE, [*common, *args.set], profile=args.profile)
    for name, dtype in dtypes.items():
        peaks[name].append(matmul_peak(args.threads, dtype))
    for row in rows:
        curve_text = ", ".join(f"{s:.0f}s:{100 * a:.1f}%" for s, a in row["points"])
        t75 = f"{row['t75']:.1f} s" if row["t75"] is not None else "not reached"
        print(f"{row['label']}: test {100 * row['test']:.2f}%, {row['train_s']:.1f} s of training "
              f"({row['epoch_s']:.1f} s with the validation passes), "
              f"time to {100 * TARGET_VAL:.0f}% val {t75}; load {row['load'][0]:.1f} -> "
              f"{row['load'][1]:.1f}\n  val acc vs seconds: {curve_text}")
    fast = [r for r in rows if r["label"].startswith("fast")]
    accs = [r["test"] for r in fast]
    print(f"fast recipe: test {100 * statistics.mean(accs):.2f}% mean of {len(accs)} seed(s)"
          + (f" (± {100 * statistics.stdev(accs):.2f})" if len(accs) > 1 else "")
          + f", {statistics.mean(r['train_s'] for r in fast):.1f} s of training per run (target >= 90.0% in 600 s)")
    measured, estimated = training_flops_per_image(fast_config)
    precision = "bf16" if fast[0]["precision"].startswith("bf16") else "float32"
    achieved = statistics.median(measured * r["images"] / r["train_s"] for r in fast)
    print(f"training FLOPs per image: {measured / 1e6:.1f} M measured by torch's flop counter "
          f"(cnnlab's MAC counter, 6 x conv/linear MACs: {estimated / 1e6:.1f} M)")
    print(f"matmul peak on {args.threads} threads, best before/after training: "
          + ", ".join(f"{name} {max(values) / 1e9:.0f} GFLOP/s" for name, values in peaks.items()))
    share = (f"{100 * achieved / max(peaks[precision]):.0f}% of the {precision} matmul peak"
             if precision in peaks else f"no {precision} peak to compare with (this CPU emulates it)")
    print(f"fast recipe training FLOP/s ({fast[0]['precision']}): {achieved / 1e9:.1f} GFLOP/s over "
          f"the training passes = {share} (target >= 40%)")
    classic = next((r for r in rows if r["label"] == "classic"), None)
    t_fast = [r["t75"] for r in fast if r["t75"] is not None]
    if classic is None or classic["t75"] is None or not t_fast:
        print("time-to-75% ratio (fast / classic): not measured (a recipe did not reach 75% or was skipped)")
    else:
        print(f"time-to-75% ratio (fast / classic): {statistics.median(t_fast) / classic['t75']:.3f}")


if __name__ == "__main__":
    main()
