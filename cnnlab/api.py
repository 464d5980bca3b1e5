"""`cnnlab.train`: training plus the run's end-of-run figures.

`cnnlab.training.train` trains and writes the run folder; drawing is not its job. This is the
function the README, the CLI and studies call: it trains, then writes curves.png,
confusion.png and predictions.png into the folder. A failure to draw is a warning in log.txt
and on stderr, never a lost run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cnnlab import runs
from cnnlab.results.plots import PLOT_FILES, curves, plot_run
from cnnlab.training import Run
from cnnlab.training import train as train_only
from cnnlab.training.loggers import log_figures
from cnnlab.utils import save_figure

__all__ = ["train"]


def train(config=None, out=None, name=None, resume=None, *, callbacks=(), quiet: bool = False,
          plots: bool = True, data_dir=None, layers=None, evaluate_test: bool = True) -> Run:
    """Train a model (see `cnnlab.training.train`) and, with `plots`, draw its figures.
    With `evaluate_test` False the test set stays unused, so only the curves are drawn (the
    confusion matrix and prediction grid are made from test predictions)."""
    run = train_only(config, out, name, resume, callbacks=callbacks, quiet=quiet, data_dir=data_dir,
                     layers=layers, evaluate_test=evaluate_test)
    if plots:
        write_plots(run.path, test_set=evaluate_test)
        if run.result.get("loggers"):  # the figures go to TensorBoard / MLflow too
            log_figures(run.path, run.result, warn=runs.RunLog(run.path / runs.LOG_FILE).write)
    return run


def write_plots(run_dir, test_set: bool = True) -> None:
    """The run's figures (only curves.png without `test_set`); a failure is a warning in
    log.txt and on stderr."""
    try:
        if test_set:
            plot_run(run_dir)
        else:
            save_figure(curves(Run.load(run_dir)), Path(run_dir) / PLOT_FILES[0])
    except Exception as err:  # noqa: BLE001 - plots must never lose a finished run
        runs.RunLog(run_dir / runs.LOG_FILE).write(f"warning: plots failed: {type(err).__name__}: {err}")
        print(f"warning: plots failed ({type(err).__name__}: {err}); see {run_dir / runs.LOG_FILE}",
              file=sys.stderr)
