"""Figures from a run folder: learning curves, confusion matrix, prediction grid.

Each function returns a `matplotlib.figure.Figure` built without pyplot, so no global figure
state accumulates when a study plots hundreds of runs, and no interactive backend is needed;
notebooks still display the returned figure inline. `plot_run` evaluates the test set once and
shares the predictions between the confusion matrix and the prediction grid.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError, DataError, ModelError
from cnnlab.training import Run
from cnnlab.utils import save_figure

PLOT_FILES = ("curves.png", "confusion.png", "predictions.png")
MISTAKES_FILE = "mistakes"  # the --mistakes grid, beside predictions.png
FIGURE_FORMATS = ("png", "svg", "pdf")
CORRECT_COLOUR, MISTAKE_COLOUR = "#1a7f37", "#cf222e"
GRID_TITLE_SPACE, GRID_GAP = 0.32, 0.08  # prediction grid, in units of one image


@dataclass(frozen=True)
class Evaluation:
    """The test images with the model's class probabilities for them."""

    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    probs: np.ndarray  # float (N, K)
    classes: tuple

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)


def load_run(run):
    """A Run object from a Run or a run folder path."""
    if isinstance(run, (str, Path)):
        return Run.load(run)
    return run


def evaluate_test_set(run) -> Evaluation:
    """Predict the run's test set once (best checkpoint)."""
    run = load_run(run)
    data = run.test_data()
    if len(data.labels) == 0:
        raise DataError(f"The test set of run {getattr(run, 'path', run)} is empty; nothing to plot.")
    probs = np.asarray(run.predict(data.images), dtype=np.float64)
    return Evaluation(np.asarray(data.images), np.asarray(data.labels), probs, tuple(data.classes))


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _series(metrics: list[dict], key: str) -> np.ndarray:
    """A metric column as floats; missing or empty cells become NaN (e.g. no validation split)."""
    values = []
    for row in metrics:
        value = row.get(key)
        values.append(float(value) if value not in (None, "") else math.nan)
    return np.asarray(values, dtype=float)


def curves(run):
    """Loss and accuracy per epoch, train against val, best epoch marked; LR in a small panel."""
    run = load_run(run)
    metrics = list(run.metrics)
    if not metrics:
        raise CnnlabError(f"Run {getattr(run, 'path', '')} has no metrics yet (metrics.csv is empty).")
    from matplotlib.ticker import MaxNLocator

    epochs = np.asarray([int(row["epoch"]) for row in metrics])
    best = (run.result or {}).get("best_epoch")
    fig = _new_figure(10, 5.2)
    grid = fig.add_gridspec(2, 2, height_ratios=(3, 1))
    loss_ax, acc_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    lr_ax = fig.add_subplot(grid[1, :], sharex=loss_ax)
    for ax, metric, title in ((loss_ax, "loss", "Loss"), (acc_ax, "acc", "Accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = _series(metrics, f"{split}_{metric}")
            if metric == "acc":
                values = values * 100
            if not np.all(np.isnan(values)):
                ax.plot(epochs, values, style, markersize=3, label=split)
        if best is not None:
            ax.axvline(int(best), color="grey", linestyle="--", linewidth=1, label=f"best epoch {int(best)}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("%" if metric == "acc" else "cross-entropy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lrs = _series(metrics, "lr")
    lr_ax.plot(epochs, lrs, "-", color="tab:purple")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("epoch")
    lr_ax.grid(alpha=0.3)
    # no offset axis (a constant 1e-3 drawn as 0.95..1.05 + 1e-3 reads as a schedule)
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3), useOffset=False)
    finite = lrs[np.isfinite(lrs)]
    if finite.size and np.ptp(finite) <= 1e-9 * max(abs(finite.max()), 1e-30):
        top = abs(float(finite.max())) or 1.0  # a constant LR: show it from zero
        lr_ax.set_ylim(0, 1.5 * top)
    for ax in (loss_ax, acc_ax, lr_ax):  # epochs are whole numbers on every panel
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    status = (run.result or {}).get("status")
    path = Path(getattr(run, "path", "run"))
    name = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    fig.suptitle(f"Learning curves: {name}" + (f" ({status})" if status and status != "completed" else ""))
    return fig


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def confusion(run, outputs: Evaluation | None = None):
    """Normalised (per true class) confusion matrix on the test set, with per-class accuracy."""
    outputs = outputs or evaluate_test_set(run)
    classes = outputs.classes
    k = len(classes)
    counts = confusion_matrix(outputs.labels, outputs.predicted, k)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    size = min(max(4.5, 0.55 * k + 2.5), 16)
    fig = _new_figure(size + 1.2, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    if k <= 20:  # cell labels become unreadable beyond this
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    colour = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    per_class = np.diag(rates)
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), [f"{c} ({acc:.0%})" for c, acc in zip(classes, per_class)], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (per-class accuracy)")
    accuracy = float(np.mean(outputs.predicted == outputs.labels))
    ax.set_title(f"Confusion matrix, test set: {len(outputs.labels):,} images, accuracy {accuracy:.2%}")
    return fig


def _choose(outputs: Evaluation, n: int, mistakes_only: bool) -> np.ndarray:
    """Indices to show: the most confident mistakes, or a fixed random sample of the test set."""
    if mistakes_only:
        wrong = np.flatnonzero(outputs.predicted != outputs.labels)
        order = np.argsort(-outputs.confidence[wrong], kind="stable")
        return wrong[order][:n]
    rng = np.random.default_rng(0)  # the same images every time, so runs can be compared
    count = min(n, len(outputs.labels))
    return np.sort(rng.choice(len(outputs.labels), size=count, replace=False))


def _as_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) uint8 -> what imshow wants: (H, W) greyscale or (H, W, 3)."""
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.transpose(image[:3], (1, 2, 0)), None


def predictions(run, n: int = 25, mistakes_only: bool = False, outputs: Evaluation | None = None):
    """A grid of test images with predicted and true class and confidence; mistakes in red.

    `mistakes_only` shows the most confident mistakes instead of a fixed sample. The grid is
    one axes with an image per cell (not one axes per image), which renders several times faster.
    """
    from matplotlib.patches import Rectangle

    if n < 1:
        raise CnnlabError(f"predictions(n={n}): n must be at least 1.")
    outputs = outputs or evaluate_test_set(run)
    chosen = _choose(outputs, n, mistakes_only)
    cols = max(1, math.ceil(math.sqrt(max(len(chosen), 1))))
    rows = max(1, math.ceil(len(chosen) / cols))
    cell_h = 1 + GRID_TITLE_SPACE  # each image is 1 x 1 data units, its caption above it
    fig = _new_figure(1.9 * cols, 1.9 * cell_h * rows + 0.5)
    ax = fig.add_subplot(1, 1, 1)
    classes = outputs.classes
    for slot, index in enumerate(chosen):
        x0, y0 = slot % cols + GRID_GAP / 2, (slot // cols) * cell_h + GRID_TITLE_SPACE
        size = 1 - GRID_GAP
        pixels, cmap = _as_display(outputs.images[index])
        ax.imshow(pixels, cmap=cmap, vmin=0, vmax=255, interpolation="nearest",
                  extent=(x0, x0 + size, y0 + size, y0))
        pred, true = int(outputs.predicted[index]), int(outputs.labels[index])
        colour = CORRECT_COLOUR if pred == true else MISTAKE_COLOUR
        ax.add_patch(Rectangle((x0, y0), size, size, fill=False, edgecolor=colour,
                               linewidth=1 if pred == true else 3))
        ax.text(x0 + size / 2, y0 - 0.03, f"{classes[pred]} {outputs.confidence[index]:.0%}\ntrue: {classes[true]}",
                ha="center", va="bottom", fontsize=8, color=colour)
    ax.set_xlim(0, cols)
    ax.set_ylim(rows * cell_h, 0)
    ax.set_aspect("equal")
    ax.set_axis_off()
    wrong = int(np.sum(outputs.predicted[chosen] != outputs.labels[chosen]))
    if mistakes_only:
        title = f"Most confident mistakes ({len(chosen)} of {int(np.sum(outputs.predicted != outputs.labels)):,})"
        if not len(chosen):
            title = "No mistakes on the test set"
    else:
        title = f"Test predictions: {len(chosen)} images, {wrong} mistake(s) in red"
    fig.suptitle(title + "\npredicted class, confidence / true class", fontsize=10)
    return fig


def plot_run(run_dir, mistakes_only: bool = False, fmt: str = "png") -> list[Path]:
    """Write curves.png, confusion.png and predictions.png into the run folder.

    The curves need only metrics.csv, so they are written even when the test set cannot be
    predicted (no checkpoint yet, dataset gone); the other two are then skipped with a warning.
    A model that no longer fits its checkpoint (an edited model.json) is an error.
    `mistakes_only` writes the grid of the most confident mistakes as mistakes.png (the sample
    grid predictions.png is left alone). `fmt`: png, svg or pdf. Returns the paths written.
    """
    if fmt not in FIGURE_FORMATS:
        raise CnnlabError(f"Figure format must be one of {', '.join(FIGURE_FORMATS)}; got {fmt!r}.")
    run = load_run(run_dir)
    folder = Path(getattr(run, "path", run_dir))
    names = [Path(n).stem for n in PLOT_FILES]
    if mistakes_only:
        names[2] = MISTAKES_FILE
    written = [save_figure(curves(run), folder / f"{names[0]}.{fmt}")]
    try:
        outputs = evaluate_test_set(run)
    except ModelError:  # a model that no longer fits its checkpoint: the folder is broken, say so
        raise
    except CnnlabError as err:
        warnings.warn(f"{names[1]}.{fmt} and {names[2]}.{fmt} skipped for {folder}: {err}", stacklevel=2)
        return written
    figures = (confusion(run, outputs), predictions(run, mistakes_only=mistakes_only, outputs=outputs))
    return written + [save_figure(fig, folder / f"{name}.{fmt}") for fig, name in zip(figures, names[1:])]
