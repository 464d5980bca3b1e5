"""Figures from a run folder: `curves`, `confusion`, `predictions` return matplotlib figures;
`plot_run(run_dir)` writes curves.png, confusion.png and predictions.png into the folder.

(`cnnlab.plot` is the short name the README uses for `cnnlab.results.plots`.)
"""

from cnnlab.results.plots import confusion, curves, plot_run, predictions

__all__ = ["confusion", "curves", "plot_run", "predictions"]
