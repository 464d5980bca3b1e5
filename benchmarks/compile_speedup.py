"""Does `train.compile: true` pay on this CPU? torch.compile against eager, on TorchEngine steps.

    python benchmarks/compile_speedup.py [--model fast_cnn] [--batch 512] [--amp] [--threads 2]
        [--steps 5] [--repeats 5]

Builds the zoo model twice with the same initial weights (channels_last, as training uses it),
wraps each in a TorchEngine (one with `compile=True`), and times training steps on the same
random CIFAR-sized batch. The compiled engine's first step includes the compilation: it is
printed on its own, with how many eager steps it would pay for. Then `--repeats` rounds of
`--steps` steps, eager and compiled interleaved so machine noise hits both alike. The last line
prints the median step time ratio eager / compiled (> 1: compiling is faster per step) and the
epochs of 45,000 images after which the compilation has paid for itself. Absolute milliseconds
move 30% between machines and with load: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import torch  # noqa: E402

from cnnlab.engines.optim import OptimConfig  # noqa: E402
from cnnlab.engines.torch_engine import TorchEngine  # noqa: E402
from cnnlab.models import build  # noqa: E402

EPOCH_IMAGES = 45_000  # CIFAR-10's training split at val_fraction 0.1


def _steps(engine: TorchEngine, x, y, steps: int) -> float:
    """Median seconds of one training step over `steps` steps."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        engine.train_batch(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast_cnn")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (train.amp: true)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model, (3, 32, 32), 10, engine="torch")
    optim = OptimConfig(name="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    amp = True if args.amp else "auto"
    eager = TorchEngine(copy.deepcopy(model), optim, amp=amp)
    compiled = TorchEngine(copy.deepcopy(model), optim, amp=amp, compile=True)
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    eager.train(), compiled.train()

    _steps(eager, x, y, 2)  # warm up oneDNN's kernels
    start = time.perf_counter()
    compiled.train_batch(x, y)
    first = time.perf_counter() - start
    _steps(compiled, x, y, 1)  # a possible recompilation after the first step
    ratios, eager_s, compiled_s = [], [], []
    for _ in range(args.repeats):
        e = _steps(eager, x, y, args.steps)
        c = _steps(compiled, x, y, args.steps)
        eager_s.append(e), compiled_s.append(c), ratios.append(e / c)
    e, c = statistics.median(eager_s), statistics.median(compiled_s)
    load = os.getloadavg()[0]
    print(f"{args.model}, batch {args.batch}, {eager.precision}, {args.threads} threads, load {load:.2f}")
    print(f"first compiled step (compiles): {first:.1f} s = {first / e:.0f} eager steps")
    print(f"step: eager {1000 * e:.1f} ms, compiled {1000 * c:.1f} ms (medians of {args.repeats} x "
          f"{args.steps} steps, interleaved)")
    saved = (e - c) * EPOCH_IMAGES / args.batch
    payback = f"{(first - c) / saved:.1f} epochs of {EPOCH_IMAGES:,} images" if saved > 0 else "never"
    print(f"eager / compiled step time: {statistics.median(ratios):.2f} (the compile pays back after {payback})")


if __name__ == "__main__":
    main()
