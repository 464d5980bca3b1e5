"""Inspection: model summaries (params, MACs/FLOPs, memory), diagrams, run plots, predictions.

matplotlib and Pillow load only when a figure or an image file is made, so importing this
package stays cheap.
"""

from cnnlab.inspect.diagram import diagram
from cnnlab.inspect.plots import confusion, curves, plot_run, predictions
from cnnlab.inspect.predict import Predictions, csv_text, predict, write_csv
from cnnlab.inspect.stats import LayerStats, Summary
from cnnlab.inspect.summary import summary

__all__ = [
    "LayerStats", "Predictions", "Summary", "confusion", "csv_text", "curves", "diagram",
    "plot_run", "predict", "predictions", "summary", "write_csv",
]
