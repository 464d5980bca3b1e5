"""The NumPy engine against PyTorch on the `small_cnn` training step (issue #3's speed targets).

small_cnn: Conv(1->16, k3, pad 1) -> BN2d -> LeakyReLU -> MaxPool 2 -> Conv(16->32, k3, pad 1)
-> BN2d -> LeakyReLU -> MaxPool 2 -> Flatten -> Linear(1568->128) -> BN1d -> LeakyReLU ->
Linear(128->10); input 1x28x28, batch 100, float32, torch on 2 threads, eager NCHW.

A training step is forward + mean cross-entropy + backward + SGD(momentum 0.9) update. Both
engines start from the same weights and see the same batches. Measured in one process:

1. speed: repeats interleave the two engines (scratch then torch, then torch then scratch, ...)
   so machine noise hits both alike; each repeat times `--steps` steps per engine; the ratio
   scratch / torch is taken per repeat and its median printed. Target <= 1.3.
2. reference loops: the same step with the loop kernels of `cnnlab.verify.reference` (conv,
   max-pool, batch norm) on a few batches, over the fast engine's median step. Target >= 60.
3. peak memory: each engine's step runs in a fresh child process with glibc's mmap threshold
   fixed at 64 KiB, so every large buffer is mapped on allocation and unmapped on free; the
   peak resident set (VmHWM, reset through /proc/self/clear_refs) above the resident set
   just before the step is then the peak of the step's live buffers. The scratch engine's
   reusable work buffers are dropped before the measured step so the buffers it keeps count
   too. Target scratch / torch <= 3. tracemalloc's peak of NumPy allocations in the scratch
   step is printed as a cross-check (torch's allocations are invisible to tracemalloc).

The main ratio (speed) is printed last.

    python benchmarks/scratch_vs_torch.py [--threads 2] [--blas-threads N] [--repeats 7]
                                          [--steps 5] [--reference-batches 2] [--skip-memory]
                                          [--tune-allocator]

On a shared machine, two OpenBLAS threads on busy cores can make the scratch step 5-40x slower
(threads waiting on each other); `--blas-threads 1` shows the engine with its matmuls on one
thread against torch on `--threads`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled


def _threads_argument(default: int = 2) -> int:
    """--threads N, read before NumPy loads: OpenBLAS sizes its thread pool at import."""
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return default


THREADS = _threads_argument()
os.environ["OPENBLAS_NUM_THREADS"] = str(THREADS)  # NumPy's BLAS gets what torch gets

import numpy as np
import torch
from torch import nn

from cnnlab import scratch
from cnnlab.scratch import functional as F
from cnnlab.scratch import losses
from cnnlab.verify import reference
from cnnlab.scratch.optim import SGD

BATCH, LR, MOMENTUM = 100, 0.01, 0.9


def small_cnn(ns):
    """small_cnn from either namespace (`cnnlab.scratch` or `torch.nn`): same names, same args."""
    return ns.Sequential(OrderedDict(
        conv1=ns.Conv2d(1, 16, kernel_size=3, stride=1, padding=1),
        bn1=ns.BatchNorm2d(16), act1=ns.LeakyReLU(0.01), pool1=ns.MaxPool2d(2, 2),
        conv2=ns.Conv2d(16, 32, kernel_size=3, stride=1, padding=1),
        bn2=ns.BatchNorm2d(32), act2=ns.LeakyReLU(0.01), pool2=ns.MaxPool2d(2, 2),
        flatten=ns.Flatten(), fc1=ns.Linear(1568, 128), bn3=ns.BatchNorm1d(128),
        act3=ns.LeakyReLU(0.01), fc2=ns.Linear(128, 10),
    ))


def batches(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32),
             rng.integers(0, 10, BATCH)) for _ in range(count)]


class TorchStep:
    def __init__(self):
        torch.manual_seed(0)
        self.model = small_cnn(nn)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = nn.CrossEntropyLoss()

    def __call__(self, x, y):
        logits = self.model(x)
        loss = self.loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()


class ScratchStep:
    def __init__(self, torch_model: nn.Module):
        self.model = small_cnn(scratch)
        self.model.load_state_dict(torch_model.state_dict())
        # no gradient for the input images, as torch (they do not require grad)
        self.model.conv1.needs_input_grad = False
        self.optimizer = SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = losses.CrossEntropyLoss()

    def __call__(self, x, y):
        loss = self.loss.forward(self.model(x), y)
        self.optimizer.zero_grad()
        self.model.backward(self.loss.backward())
        self.optimizer.step()
        return loss


class ReferenceStep(ScratchStep):
    """The scratch step with conv, max-pool and batch norm swapped for the loop kernels."""

    def __call__(self, x, y):
        with _reference_kernels():
            return super().__call__(x, y)


class _reference_kernels:
    """Point the layers' kernel module at the loop references for the duration (the
    wrappers drop the fast kernels' extra arguments: work buffers, need_input_grad)."""

    NAMES = ("conv2d_forward", "conv2d_backward", "max_pool2d_forward", "max_pool2d_backward",
             "batchnorm_forward", "batchnorm_backward")

    def __enter__(self):
        self.saved = {name: getattr(F, name) for name in self.NAMES}

        def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, **_):
            return reference.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)

        def max_pool2d_forward(x, kernel_size, stride, padding, dilation):
            return reference.max_pool2d_forward(x, kernel_size, stride, padding)

        def batchnorm_forward(x, gamma, beta, mean, var, tracked, training, momentum, eps, **_):
            tracked += 1
            return reference.batchnorm_forward(x, gamma, beta, mean, var, training, momentum, eps)

        def batchnorm_backward(dout, cache, *_, **__):
            return reference.batchnorm_backward(dout, cache)

        def conv2d_backward(dout, cache, *_, **__):  # always computes dx
            return reference.conv2d_backward(dout, cache)

        F.conv2d_forward, F.conv2d_backward = conv2d_forward, conv2d_backward
        F.max_pool2d_forward = max_pool2d_forward
        F.max_pool2d_backward = reference.max_pool2d_backward
        F.batchnorm_forward, F.batchnorm_backward = batchnorm_forward, batchnorm_backward

    def __exit__(self, *exc):
        for name, kernel in self.saved.items():
            setattr(F, name, kernel)


def _with_blas_threads(step, threads: int):
    from cnnlab.scratch.threads import blas_threads

    def limited(x, y):
        with blas_threads(threads):
            return step(x, y)

    return limited


def check_same_losses(data) -> float:
    """Both engines train the same net: their first losses agree (float32 tolerance)."""
    torch_step = TorchStep()
    scratch_step = ScratchStep(torch_step.model)
    diffs = []
    for x, y in data[:3]:
        ours = scratch_step(x, y)
        theirs = torch_step(torch.from_numpy(x), torch.from_numpy(y))
        diffs.append(abs(ours - theirs) / abs(theirs))
    return max(diffs)


def time_steps(step, data, steps: int, to_torch: bool) -> float:
    """Seconds per step, averaged over `steps` steps."""
    start = time.perf_counter()
    for i in range(steps):
        x, y = data[i % len(data)]
        if to_torch:
            x, y = torch.from_numpy(x), torch.from_numpy(y)
        step(x, y)
    return (time.perf_counter() - start) / steps


def memory_child(engine: str) -> None:
    """Run in a fresh process: print the peak RSS growth (bytes) of one training step.

    The parent starts this process with a fixed glibc mmap threshold (64 KiB), which also
    turns off glibc's dynamic threshold: every large buffer is mapped when allocated and
    unmapped when freed, so the resident set follows the live buffers of both engines
    instead of what the heap happens to keep from earlier steps.
    """
    import tracemalloc

    data = batches(3)
    torch_step = TorchStep()
    step = torch_step if engine == "torch" else ScratchStep(torch_step.model)
    to_torch = engine == "torch"
    time_steps(step, data, 2, to_torch)  # warm-up: lazy library init, optimiser state
    x, y = data[2]
    if to_torch:
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    traced = None
    if engine == "scratch":
        _drop_work_buffers(step.model)
        tracemalloc.start()
        step(x, y)
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        _drop_work_buffers(step.model)  # the measured step allocates (and counts) them anew
    before = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    step(x, y)
    peak = _rss("VmHWM")
    print(json.dumps({"rss_peak_growth": peak - before, "tracemalloc_peak": traced}))


def _drop_work_buffers(model) -> None:
    for _, module in model.named_modules():
        module._drop_state()


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(repeats: int = 3) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    results = {"torch": [], "scratch": []}
    for _ in range(repeats):
        for engine in ("torch", "scratch"):
            out = subprocess.run([sys.executable, __file__, "--memory-child", engine],
                                 capture_output=True, text=True, check=True, env=env)
            results[engine].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--reference-batches", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for torch and for NumPy's BLAS (default 2)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit NumPy's BLAS to this many threads for the scratch steps "
                        "(cnnlab.scratch.threads.blas_threads); default: --threads")
    parser.add_argument("--tune-allocator", action="store_true",
                        help="raise glibc's mmap/trim thresholds first, as `cnnlab train` does "
                        "(cnnlab.training.runtime.tune_allocator); applies to both engines")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", choices=["torch", "scratch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    if args.memory_child:
        memory_child(args.memory_child)
        return

    tuned = False
    if args.tune_allocator:
        from cnnlab.training.runtime import tune_allocator

        tuned = tune_allocator()
    data = batches(8)
    print(f"numpy {np.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch "
          f"thread(s), OpenBLAS threads {os.environ['OPENBLAS_NUM_THREADS']}, batch {BATCH}, "
          f"float32, allocator {'tuned' if tuned else 'glibc default'}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"first-step loss agreement (relative): {check_same_losses(data):.1e}")

    torch_step = TorchStep()
    scratch_step = ScratchStep(torch_step.model)
    if args.blas_threads is not None:
        print(f"scratch steps limited to {args.blas_threads} BLAS thread(s)")
        scratch_step = _with_blas_threads(scratch_step, args.blas_threads)
    time_steps(scratch_step, data, 2, False)  # warm-up
    time_steps(torch_step, data, 2, True)
    ratios, scratch_times, torch_times = [], [], []
    for repeat in range(args.repeats):
        order = ("scratch", "torch") if repeat % 2 == 0 else ("torch", "scratch")
        times = {}
        for engine in order:
            step = scratch_step if engine == "scratch" else torch_step
            times[engine] = time_steps(step, data, args.steps, engine == "torch")
        scratch_times.append(times["scratch"])
        torch_times.append(times["torch"])
        ratios.append(times["scratch"] / times["torch"])
    scratch_median = statistics.median(scratch_times)
    print(f"step time, median of {args.repeats} x {args.steps} steps: scratch "
          f"{scratch_median * 1e3:.1f} ms, torch {statistics.median(torch_times) * 1e3:.1f} ms; "
          f"per-repeat ratios {', '.join(f'{r:.2f}' for r in ratios)}")

    if args.reference_batches:
        reference_step = ReferenceStep(torch_step.model)
        reference_time = time_steps(reference_step, data, args.reference_batches, False)
        print(f"reference loop kernels: {reference_time:.2f} s per step "
              f"({args.reference_batches} batches); fast / reference speed-up "
              f"{reference_time / scratch_median:.0f}x (target >= 60)")

    if not args.skip_memory:
        memory = measure_memory()
        torch_peak = statistics.median(r["rss_peak_growth"] for r in memory["torch"])
        scratch_peak = statistics.median(r["rss_peak_growth"] for r in memory["scratch"])
        traced = statistics.median(r["tracemalloc_peak"] for r in memory["scratch"])
        print(f"peak memory of one step (RSS growth, fresh process, median of 3): scratch "
              f"{scratch_peak / 2**20:.1f} MiB, torch {torch_peak / 2**20:.1f} MiB "
              f"(scratch NumPy peak by tracemalloc {traced / 2**20:.1f} MiB); "
              f"ratio {scratch_peak / torch_peak:.2f} (target <= 3)")

    print(f"scratch / torch step time (median ratio, target <= 1.3): "
          f"{statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
