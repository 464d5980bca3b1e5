"""A stand-in trainer for study tests: writes a run folder in the contract's format in
milliseconds, with curves that depend on the config, so the runner and report are tested
without training. Imported by spawned workers (by module name), so it stays importable."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import yaml

from cnnlab import runs
from cnnlab.utils import atomic_write_text, write_json

CRASH_LR = 9.0  # optim.lr that makes the fake trainer raise
DIVERGE_LR = 5.0  # optim.lr that gives NaN losses and status "diverged"
HEADER = "epoch,train_loss,train_acc,val_loss,val_acc,lr,epoch_s"


def _next_version(folder: Path) -> Path:
    n = 1
    while (folder / f"v{n}").exists():
        n += 1
    return folder / f"v{n}"


def fake_train(config: dict, out: str, name: str) -> Path:
    lr = float(config["optim"]["lr"])
    seed = int(config["train"]["seed"])
    epochs = int(config["train"]["epochs"])
    run_dir = _next_version(Path(out) / name)
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    model = config["model"]
    options = {k: v for k, v in model.items() if k not in ("name", "spec", "whiten")}
    runs.write_model_args(run_dir, runs.ModelArgs(
        ref=model.get("spec") or model["name"], options=options, input_shape=(1, 8, 8),
        num_classes=10, engine=config["train"]["engine"], label=model["name"]))
    print(f"fake training {name} lr={lr} threads={config['train']['threads']} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if lr == CRASH_LR:
        raise RuntimeError(f"simulated crash at lr={lr}")
    rng = random.Random(seed * 1000 + int(lr * 1e4))
    ceiling = 0.9 - 0.1 * abs(math.log10(lr) + 2)  # best near lr = 1e-2
    rows = [HEADER]
    for e in range(1, epochs + 1):
        if lr == DIVERGE_LR and e >= 2:
            rows.append(f"{e},nan,0.1,nan,0.1,{lr},0.01")
            continue
        acc = ceiling * (1 - math.exp(-e)) + rng.uniform(-0.01, 0.01)
        rows.append(f"{e},{1.5 * math.exp(-e / 2):.4f},{acc + 0.02:.4f},{1.4 * math.exp(-e / 2) + 0.1:.4f},"
                    f"{acc:.4f},{lr},0.01")
    atomic_write_text(run_dir / "metrics.csv", "\n".join(rows) + "\n")
    status = "diverged" if lr == DIVERGE_LR else "completed"
    write_json(run_dir / "result.json", {
        "status": status, "test_acc": ceiling + rng.uniform(-0.01, 0.01), "test_loss": 0.5,
        "best_epoch": epochs, "best_val_acc": ceiling, "epochs_run": epochs, "params": 1234,
        "macs": 56789, "model": config["model"]["name"], "dataset": config["data"]["dataset"],
        "engine": config["train"]["engine"], "device": "cpu", "s_per_epoch": 0.01, "img_per_s": 1e5,
        "train_s": 0.01 * epochs, "input_shape": [1, 8, 8], "num_classes": 10,
        "per_class_acc": {str(k): min(1.0, ceiling + 0.01 * (k - 5)) for k in range(10)},
    })
    return run_dir


DIE_LR = 7.0  # optim.lr that kills the worker process outright (as a segfault or OOM kill would)


def dying_train(config: dict, out: str, name: str) -> Path:
    if float(config["optim"]["lr"]) == DIE_LR:
        os._exit(3)
    return fake_train(config, out, name)


def planted_train(config: dict, out: str, name: str) -> Path:
    """fake_train with a planted per-seed test accuracy: `optim.lr` 0.02 differs from 0.01 by a
    constant 1 point on every seed (tiny paired spread), 0.05 by a noisy one (large spread)."""
    run_dir = fake_train(config, out, name)
    lr, seed = float(config["optim"]["lr"]), int(config["train"]["seed"])
    base = 0.9 + 0.02 * math.sin(seed)  # a per-seed offset shared by all variants
    offset = {0.01: 0.0, 0.02: 0.01 + 0.0001 * math.cos(seed), 0.05: 0.06 * math.sin(3.7 * seed)}[lr]
    result = runs.read_result(run_dir)
    write_json(run_dir / "result.json", {**result, "test_acc": base + offset})
    return run_dir


def search_train(config: dict, out: str, name: str, callbacks=(), evaluate_test: bool = True) -> Path:
    """A stand-in for a search trial (and the re-runs): per-epoch validation accuracy that is
    best near lr = 1e-2, passed to the callbacks as the fit loop would (so Optuna's pruner sees
    every epoch), and no test accuracy without `evaluate_test`."""
    from cnnlab.training.loop import FitState

    lr, seed = float(config["optim"]["lr"]), int(config["train"]["seed"])
    epochs = int(config["train"]["epochs"])
    run_dir = _next_version(Path(out) / name)
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    ceiling = max(0.1, 0.95 - 0.2 * abs(math.log10(lr) + 2))
    state = FitState(engine=None, scheduler=None, epochs=epochs)
    for cb in callbacks:
        cb.state = state
        cb.on_train_begin({})
    rows, best = [HEADER], None
    for e in range(1, epochs + 1):
        acc = ceiling * (1 - 0.5 * math.exp(-e)) + 0.001 * seed
        rows.append(f"{e},{1 - acc:.4f},{acc:.4f},{1 - acc:.4f},{acc:.4f},{lr},0.01")
        best = acc if best is None else max(best, acc)
        for cb in callbacks:
            cb.on_epoch_end(e, {"val_acc": acc, "epoch": e})
        if state.stop_training:
            break
    atomic_write_text(run_dir / "metrics.csv", "\n".join(rows) + "\n")
    status = state.status if state.stop_training else "completed"
    write_json(run_dir / "result.json", {
        "status": status, "test_acc": (ceiling - 0.01 + 0.002 * seed) if evaluate_test else None,
        "test_evaluated": evaluate_test, "best_val_acc": best, "best_epoch": len(rows) - 1,
        "epochs_run": len(rows) - 1, "model": config["model"]["name"], "dataset": config["data"]["dataset"],
        "engine": config["train"]["engine"], "device": "cpu", "params": 1234, "s_per_epoch": 0.01,
    })
    return run_dir


STOPPABLE_LR = 3.0  # optim.lr at which `stoppable_train` trains until it is stopped


def stoppable_train(config: dict, out: str, name: str) -> Path:
    """`fake_train`, except that at STOPPABLE_LR it behaves like a long run that is stopped:
    it writes last.pt and a "running" result, waits, and on KeyboardInterrupt (Ctrl-C, SIGTERM,
    a Ray cancel) records itself interrupted and raises TrainingInterrupted, as the trainer does."""
    import time

    from cnnlab.errors import TrainingInterrupted

    if float(config["optim"]["lr"]) != STOPPABLE_LR:
        return fake_train(config, out, name)
    run_dir = _next_version(Path(out) / name)
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(run_dir / "last.pt", "checkpoint")
    write_json(run_dir / "result.json", {"status": "running"})
    try:
        for _ in range(1200):  # short sleeps: Ray's cancel interrupts Python code, not one long sleep
            time.sleep(0.1)
    except KeyboardInterrupt:
        write_json(run_dir / "result.json", {"status": "interrupted"})
        raise TrainingInterrupted(f"stopped; resume with {run_dir}") from None
    raise RuntimeError("stoppable_train was never stopped")
