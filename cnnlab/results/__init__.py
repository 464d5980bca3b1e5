"""Results of a finished run: its figures (curves, confusion matrix, prediction grid) and its
predictions for a dataset split, image files or a folder, as CSV.

matplotlib and Pillow load only when a figure or an image file is made.
"""

from cnnlab.results.plots import confusion, curves, plot_run, predictions
from cnnlab.results.predict import Predictions, csv_text, predict, write_csv

__all__ = ["Predictions", "confusion", "csv_text", "curves", "plot_run", "predict", "predictions",
           "write_csv"]
