"""Training: the fit loop, callbacks, engines, checkpoints, run folders and `train()`.

    run = train(load_config("examples/mnist_fast.yaml"))   # -> Run, folder runs/<name>/v<N>/
    run = Run.load("runs/small_cnn-digits/v1")
    state = fit(engine, train_loader, val_loader, epochs, scheduler, [CSVLogger("m.csv")])
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
    read_metrics_csv,
)
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.training.loop import METRIC_COLUMNS, FitState, evaluate, fit
from cnnlab.training.run import Run
from cnnlab.training.trainer import build_session, train

__all__ = [
    "BestCheckpoint", "CSVLogger", "Callback", "EarlyStopping", "EpochLines", "FitState",
    "LastCheckpoint", "LogLines", "METRIC_COLUMNS", "Monitor", "NaNGuard", "Run", "Timer",
    "TqdmProgress", "build_session", "evaluate", "fit", "load_checkpoint", "progress_callback",
    "read_metrics_csv", "save_checkpoint", "train",
]
