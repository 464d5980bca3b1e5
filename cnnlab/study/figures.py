"""Study figures: overlaid learning curves (mean over seeds with a min-max band) and the test
accuracy of every variant. Built on `matplotlib.figure.Figure`, so no pyplot state is touched."""

from __future__ import annotations

import io

from cnnlab.study.results import StudyData, curve_bands

PANELS = (("train_loss", "train loss"), ("val_loss", "val loss"), ("train_acc", "train accuracy"),
          ("val_acc", "val accuracy"))


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def curves_figure(data: StudyData):
    """2 x 2 panels (loss and accuracy, train and val); one colour per variant."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    colors = _colors(len(data.variants))
    for ax, (key, title) in zip(axes.flat, PANELS):
        for variant, color in zip(data.variants, colors):
            band = curve_bands(data.completed(variant["name"]), key)
            if not band["epoch"]:
                continue
            scale = 100.0 if key.endswith("acc") else 1.0
            ax.plot(band["epoch"], [v * scale for v in band["mean"]], color=color, lw=1.8,
                    marker="o" if len(band["epoch"]) < 12 else None, ms=3, label=variant["name"])
            ax.fill_between(band["epoch"], [v * scale for v in band["min"]], [v * scale for v in band["max"]],
                            color=color, alpha=0.18, lw=0)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("%" if key.endswith("acc") else "cross-entropy")
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), fontsize=8)
    fig.suptitle("Learning curves: mean over seeds, band = min to max")
    return fig


def accuracy_figure(data: StudyData):
    """Test accuracy per variant: each seed a dot, the mean ± std as a bar."""
    from matplotlib.figure import Figure

    from cnnlab.study import stats

    names = [v["name"] for v in data.variants]
    fig = Figure(figsize=(8, 0.9 + 0.45 * len(names)), layout="constrained")
    ax = fig.subplots()
    for y, (name, color) in enumerate(zip(names, _colors(len(names)))):
        accs = [float(r.result["test_acc"]) * 100 for r in data.completed(name)
                if isinstance(r.result.get("test_acc"), (int, float))]
        if not accs:
            continue
        ax.scatter(accs, [y] * len(accs), color=color, s=22, zorder=3)
        if len(accs) > 1:
            ax.errorbar(stats.mean(accs), y, xerr=stats.sample_std(accs), fmt="|", color="black",
                        ms=14, capsize=4, zorder=4)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Test accuracy: dots are seeds, bars mean ± std")
    return fig


def png_bytes(fig, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
