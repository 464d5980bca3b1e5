"""The NumPy engine against PyTorch on the training step of the zoo's models (issues #3, #10).

A training step is what `cnnlab train` runs per batch: forward + mean cross-entropy + backward
+ SGD(momentum 0.9, weight decay 5e-4) update, driven through the two engines' adapters
(`ScratchEngine`, `TorchEngine` with its CPU defaults: float32, channels_last for conv nets).
Both engines start from the same weights and see the same batches, torch and NumPy's BLAS
both on `--threads` (default 2). Measured in one process:

1. speed, per model (lenet, deep_cnn, small_cnn on 1x28x28; simple_cnn, vgg8_bn on 3x32x32;
   resnet18_cifar reported, no target): repeats interleave the two engines (scratch then torch,
   then torch then scratch, ...) so machine noise hits both alike; each repeat times `--steps`
   steps per engine; the ratio scratch / torch is taken per repeat and its median printed.
   Target <= 1.3 for each of the five; the last line is the worst of the five.
2. reference loops (small_cnn): the same step with the loop kernels of `cnnlab.verify.reference`
   (conv, max-pool, batch norm) on a few batches, over the fast engine's median step.
   Target >= 60.
3. peak memory (small_cnn): each engine's step runs in a fresh child process with glibc's mmap
   threshold fixed at 64 KiB, so every large buffer is mapped on allocation and unmapped on
   free; the peak resident set (VmHWM, reset through /proc/self/clear_refs) above the resident
   set just before the step is then the peak of the step's live buffers. The scratch engine's
   reusable work buffers are dropped before the measured step so the buffers it keeps count
   too. Target scratch / torch <= 3. tracemalloc's peak of NumPy allocations in the scratch
   step is printed as a cross-check (torch's allocations are invisible to tracemalloc).

    python benchmarks/scratch_vs_torch.py [--models lenet,small_cnn] [--batch 128]
                                          [--threads 2] [--blas-threads N] [--repeats 7]
                                          [--steps 3] [--reference-batches 2] [--skip-memory]
                                          [--tune-allocator] [--nchw]

On a shared machine, two OpenBLAS threads on busy cores can make the scratch step 5-40x slower
(threads waiting on each other); `--blas-threads 1` shows the engine with its matmuls on one
thread against torch on `--threads`. The load average is printed with every model's figures.
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

from cnnlab import models
from cnnlab.engines.scratch_engine import ScratchEngine
from cnnlab.engines.torch_engine import TorchEngine
from cnnlab.scratch import functional as F
from cnnlab.verify import reference

# the five models with a target, then those only reported
TARGET_MODELS = ("lenet", "deep_cnn", "small_cnn", "simple_cnn", "vgg8_bn")
REPORTED_MODELS = ("resnet18_cifar",)
TARGET = 1.3
BATCH = 128  # train.batch_size's default, as in the labs
# a pause before each engine's turn: an engine's idle pool threads (torch's OpenMP, OpenBLAS)
# spin for a while after their last task and would take a core from the other engine's turn
SETTLE_S = 0.5
OPTIM = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}


def batches(count: int, input_shape: tuple, batch: int = BATCH, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, *input_shape)).astype(np.float32),
             rng.integers(0, 10, batch)) for _ in range(count)]


class TorchStep:
    """One training step of `TorchEngine` (CPU defaults; `channels_last=False` for NCHW)."""

    def __init__(self, model: str, channels_last: bool = True):
        torch.manual_seed(0)
        self.engine = TorchEngine(models.build(model), OPTIM, channels_last=channels_last)
        self.engine.train()
        self.model = self.engine.model

    def __call__(self, x, y):
        loss_sum, _ = self.engine.train_batch(torch.from_numpy(x), torch.from_numpy(y))
        return loss_sum / len(y)


class ScratchStep:
    """One training step of `ScratchEngine`, from the torch model's weights."""

    def __init__(self, model: str, torch_model):
        self.model = models.build(model, engine="scratch")
        self.model.load_state_dict({k: v.detach().numpy() for k, v in torch_model.state_dict().items()})
        self.engine = ScratchEngine(self.model, OPTIM)  # skips the input gradient, as torch
        self.engine.train()

    def __call__(self, x, y):
        loss_sum, _ = self.engine.train_batch(x, y)
        return loss_sum / len(y)


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


def check_same_losses(model: str, data, channels_last: bool) -> float:
    """Both engines train the same net: their first losses agree (float32 tolerance; models
    with dropout draw different masks, so their losses agree only roughly)."""
    torch_step = TorchStep(model, channels_last)
    scratch_step = ScratchStep(model, torch_step.model)
    diffs = []
    for x, y in data[:2]:
        ours, theirs = scratch_step(x, y), torch_step(x, y)
        diffs.append(abs(ours - theirs) / abs(theirs))
    return max(diffs)


def time_steps(step, data, steps: int) -> float:
    """Seconds per step, averaged over `steps` steps."""
    start = time.perf_counter()
    for i in range(steps):
        x, y = data[i % len(data)]
        step(x, y)
    return (time.perf_counter() - start) / steps


def compare(model: str, args) -> dict:
    """Interleaved repeats of both engines' steps on `model`; medians and the median ratio."""
    shape = models.get(model).input_shape
    data = batches(4, shape, args.batch)
    agreement = check_same_losses(model, data, not args.nchw)
    torch_step = TorchStep(model, not args.nchw)
    scratch_step = ScratchStep(model, torch_step.model)
    if args.blas_threads is not None:
        scratch_step = _with_blas_threads(scratch_step, args.blas_threads)
    steps, repeats = args.steps, args.repeats
    if model in REPORTED_MODELS:  # seconds per step: fewer of them
        steps, repeats = 1, max(3, repeats // 2)
    time_steps(scratch_step, data, 1)  # warm-up: lazy init, work buffers, optimiser state
    time_steps(torch_step, data, 1)
    load_before = os.getloadavg()[0]
    ratios, scratch_times, torch_times = [], [], []
    for repeat in range(repeats):
        order = ("scratch", "torch") if repeat % 2 == 0 else ("torch", "scratch")
        times = {}
        for engine in order:
            time.sleep(SETTLE_S)
            times[engine] = time_steps(scratch_step if engine == "scratch" else torch_step, data, steps)
        scratch_times.append(times["scratch"])
        torch_times.append(times["torch"])
        ratios.append(times["scratch"] / times["torch"])
    return {"model": model, "input": shape, "agreement": agreement, "ratios": ratios,
            "scratch": statistics.median(scratch_times), "torch": statistics.median(torch_times),
            "ratio": statistics.median(ratios), "repeats": repeats, "steps": steps,
            "load": (load_before + os.getloadavg()[0]) / 2}


def memory_child(engine: str) -> None:
    """Run in a fresh process: print the peak RSS growth (bytes) of one small_cnn step.

    The parent starts this process with a fixed glibc mmap threshold (64 KiB), which also
    turns off glibc's dynamic threshold: every large buffer is mapped when allocated and
    unmapped when freed, so the resident set follows the live buffers of both engines
    instead of what the heap happens to keep from earlier steps.
    """
    import tracemalloc

    data = batches(3, (1, 28, 28))
    torch_step = TorchStep("small_cnn")
    step = torch_step if engine == "torch" else ScratchStep("small_cnn", torch_step.model)
    time_steps(step, data, 2)  # warm-up: lazy library init, optimiser state
    x, y = data[2]
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


def _model_list(text: str) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    for model in chosen:
        models.get(model)  # an unknown name fails here, with the zoo's names
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(TARGET_MODELS + REPORTED_MODELS),
                        help="comma-separated zoo models (default: the five with a target and "
                        "resnet18_cifar)")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--reference-batches", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for torch and for NumPy's BLAS (default 2)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit NumPy's BLAS to this many threads for the scratch steps "
                        "(cnnlab.scratch.threads.blas_threads); default: --threads")
    parser.add_argument("--tune-allocator", action="store_true",
                        help="raise glibc's mmap/trim thresholds first, as `cnnlab train` does "
                        "(cnnlab.training.runtime.tune_allocator); applies to both engines")
    parser.add_argument("--nchw", action="store_true",
                        help="torch in NCHW instead of its engine's CPU default, channels_last")
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
    chosen = _model_list(args.models)
    print(f"numpy {np.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch "
          f"thread(s), OpenBLAS threads {os.environ['OPENBLAS_NUM_THREADS']}"
          f"{f' (scratch limited to {args.blas_threads})' if args.blas_threads else ''}, batch "
          f"{args.batch}, float32, torch {'NCHW' if args.nchw else 'channels_last'}, allocator "
          f"{'tuned' if tuned else 'glibc default'}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    results = {}
    for model in chosen:
        r = compare(model, args)
        results[model] = r
        target = f"target <= {TARGET}" if model in TARGET_MODELS else "no target"
        print(f"{model:15s} {'x'.join(map(str, r['input'])):8s} scratch {r['scratch'] * 1e3:8.1f} ms"
              f"  torch {r['torch'] * 1e3:8.1f} ms  ratio {r['ratio']:5.2f} ({target}; median of "
              f"{r['repeats']} x {r['steps']} steps, per repeat "
              f"{' '.join(f'{x:.2f}' for x in r['ratios'])}; load {r['load']:.1f}; first-loss "
              f"agreement {r['agreement']:.0e})", flush=True)

    if args.reference_batches and "small_cnn" in results:
        data = batches(4, (1, 28, 28), args.batch)
        reference_step = ReferenceStep("small_cnn", TorchStep("small_cnn").model)
        reference_time = time_steps(reference_step, data, args.reference_batches)
        print(f"reference loop kernels (small_cnn): {reference_time:.2f} s per step "
              f"({args.reference_batches} batches); fast / reference speed-up "
              f"{reference_time / results['small_cnn']['scratch']:.0f}x (target >= 60)")

    if not args.skip_memory:
        memory = measure_memory()
        torch_peak = statistics.median(r["rss_peak_growth"] for r in memory["torch"])
        scratch_peak = statistics.median(r["rss_peak_growth"] for r in memory["scratch"])
        traced = statistics.median(r["tracemalloc_peak"] for r in memory["scratch"])
        print(f"peak memory of one small_cnn step (RSS growth, fresh process, median of 3): "
              f"scratch {scratch_peak / 2**20:.1f} MiB, torch {torch_peak / 2**20:.1f} MiB "
              f"(scratch NumPy peak by tracemalloc {traced / 2**20:.1f} MiB); "
              f"ratio {scratch_peak / torch_peak:.2f} (target <= 3)")

    targeted = [results[m] for m in TARGET_MODELS if m in results]
    if targeted:
        worst = max(targeted, key=lambda r: r["ratio"])
        print(f"worst scratch / torch step-time ratio of {len(targeted)} model(s) with a target "
              f"(median, target <= {TARGET}): {worst['ratio']:.2f} ({worst['model']}; load "
              f"average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
