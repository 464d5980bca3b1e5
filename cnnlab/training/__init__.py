"""Training: the fit loop, callbacks, checkpoints, `train()` and `Run`.

    run = train(load_config("examples/mnist_fast.yaml"))   # -> Run, folder runs/<name>/v<N>/
    run = Run.load("runs/small_cnn-digits/v1")
    state = fit(engine, train_loader, val_loader, epochs, scheduler, [CSVLogger("m.csv")])

Engines (`cnnlab.engines`) and the run-folder format (`cnnlab.runs`) sit below this package;
`cnnlab.train` (`cnnlab.api`) is this package's `train` plus the end-of-run plots.
"""

from cnnlab.training.callbacks import (
    BestCheckpoint,
    Callback,
    CSVLogger,
    EarlyStopping,
    EpochLines,
    LastCheckpoint,
    LogLines,
    Monitor,
    NaNGuard,
    Timer,
    TqdmProgress,
    progress_callback,
)
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.runs import METRIC_COLUMNS
from cnnlab.training.loop import FitState, evaluate, fit
from cnnlab.training.run import Run
from cnnlab.training.trainer import build_session, train

__all__ = [
    "BestCheckpoint", "CSVLogger", "Callback", "EarlyStopping", "EpochLines", "FitState",
    "LastCheckpoint", "LogLines", "METRIC_COLUMNS", "Monitor", "NaNGuard", "Run", "Timer",
    "TqdmProgress", "build_session", "evaluate", "fit", "load_checkpoint", "progress_callback",
    "save_checkpoint", "train",
]
