"""The figure of an LR range test (`cnnlab.training.lr_find`)."""

from __future__ import annotations

import numpy as np


def lr_find_figure(finding):
    """Loss against LR (log axis): each batch faint, the smoothed loss bold, the suggestion marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(finding.lrs, finding.losses, color="tab:blue", alpha=0.25, linewidth=1, label="batch loss")
    ax.plot(finding.lrs, finding.smoothed, color="tab:blue", linewidth=2, label="smoothed")
    ax.set_xscale("log")
    if finding.suggestion is not None:
        ax.axvline(finding.suggestion, color="tab:red", linestyle="--", linewidth=1,
                   label=f"suggested lr {finding.suggestion:.2g}")
    finite = finding.smoothed[np.isfinite(finding.smoothed)]
    if finite.size:  # keep the divergence from flattening the interesting part
        low, high = float(finite.min()), float(finite[: max(1, finite.size // 10)].max())
        ax.set_ylim(low - 0.1 * (high - low + 1e-9), max(high, low) + 0.5 * (high - low + 1e-9))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    end = "stopped at divergence" if finding.diverged else "full sweep"
    ax.set_title(f"LR range test: {len(finding.lrs)} batches, {end}")
    return fig
