"""The learning-rate range test (Smith 2015; fastai's lr_find): train on batches while the LR
grows exponentially, watch the smoothed loss, stop when it diverges, suggest an LR.

It builds the same session as `train` (data pipeline, model, engine adapter from
`cnnlab.engines`), so it works for any engine; it drives only `engine.train_batch` and the
optimizer's `param_groups`, like the fit loop. Nothing is written: the run folder is not
touched and the model is thrown away.
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass

import numpy as np

from cnnlab.config import Config, load_config
from cnnlab.errors import ConfigError

SKIP_START = 5  # the first smoothed points are noisy; no suggestion from them


@dataclass(frozen=True)
class LRFinding:
    """The sweep: one entry per batch trained."""

    lrs: np.ndarray
    losses: np.ndarray  # mean loss of each batch
    smoothed: np.ndarray  # bias-corrected exponential moving average of `losses`
    suggestion: float | None  # the LR of the steepest descent of the smoothed loss
    diverged: bool  # stopped because the smoothed loss passed `diverge` x its minimum
    config: Config

    @property
    def min_loss_lr(self) -> float:
        return float(self.lrs[int(np.nanargmin(self.smoothed))])


def lr_schedule(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """`steps` learning rates from start_lr to end_lr, evenly spaced on a log scale."""
    return start_lr * (end_lr / start_lr) ** (np.arange(steps) / max(steps - 1, 1))


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    """The LR where the smoothed loss falls fastest per log-LR, before its minimum."""
    end = int(np.nanargmin(smoothed)) + 1
    if end - SKIP_START < 3:
        return None
    window_lrs, window = np.log10(lrs[SKIP_START:end]), smoothed[SKIP_START:end]
    slope = np.gradient(window, window_lrs)
    return float(10 ** window_lrs[int(np.argmin(slope))])


def lr_find(config=None, *, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 200,
            beta: float = 0.9, diverge: float = 4.0) -> LRFinding:
    """Run the range test for `config` (a Config, dict or YAML path) and return the sweep."""
    from cnnlab.training.runtime import compute_threads
    from cnnlab.training.trainer import build_session

    if not (0 < start_lr < end_lr) or steps < 10:
        raise ConfigError(f"lr_find needs 0 < start_lr < end_lr and steps >= 10; got start_lr "
                          f"{start_lr}, end_lr {end_lr}, steps {steps}.")
    config = config if isinstance(config, Config) else load_config(config)
    lrs = lr_schedule(start_lr, end_lr, steps)
    losses, smoothed = [], []
    average, best, diverged = 0.0, math.inf, False
    with compute_threads(config.train.threads):
        session = build_session(config)
        engine, loader = session.engine, session.train_loader
        engine.train()
        epoch = 0
        while len(losses) < steps and not diverged:
            epoch += 1
            loader.set_epoch(epoch)
            for x, y in loader:
                i = len(losses)
                if i >= steps:
                    break
                for group in engine.optimizer.param_groups:
                    group["lr"] = float(lrs[i])
                loss_sum, _ = engine.train_batch(x, y)
                loss = float(loss_sum) / len(y)
                average = beta * average + (1 - beta) * loss
                value = average / (1 - beta ** (i + 1))
                losses.append(loss)
                smoothed.append(value)
                if not math.isfinite(value) or value > diverge * best:
                    diverged = True
                    break
                best = min(best, value)
    n = len(losses)
    smoothed_arr = np.asarray(smoothed, float)
    finite = np.where(np.isfinite(smoothed_arr), smoothed_arr, np.nan)
    return LRFinding(lrs[:n], np.asarray(losses, float), finite,
                     suggest(lrs[:n], finite) if np.isfinite(finite).any() else None, diverged, config)


def apply(finding: LRFinding, path) -> Path:
    """Write a copy of the config with `optim.lr` set to the suggestion, as YAML."""

    if finding.suggestion is None:
        raise ConfigError("The LR range test found no clear descent, so there is no LR to apply; "
                          "widen --start-lr/--end-lr or raise --steps.")
    lr = float(f"{finding.suggestion:.3g}")
    return Path(finding.config.replace(**{"optim.lr": lr}).save(path))
