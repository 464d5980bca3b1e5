"""Inspection of a model: summaries (params, MACs/FLOPs, memory) and diagrams, for both engines.

A model is named by a zoo name, a spec, a spec file or a run folder (read through
`cnnlab.runs`; nothing here imports the trainer). Figures and predictions of a finished run
are `cnnlab.results`'. matplotlib loads only when a figure is made.
"""

from cnnlab.inspect.diagram import diagram
from cnnlab.inspect.stats import LayerStats, Summary
from cnnlab.inspect.summary import summary

__all__ = ["LayerStats", "Summary", "diagram", "summary"]
