"""Run plots: figures from metrics and test predictions, and PNGs written into the run folder."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.results.plots import (
    Evaluation, confusion, confusion_matrix, curves, plot_run, predictions, _choose,
)

CLASSES = ("cat", "dog", "bird")


def _fake_run(path: Path, epochs: int = 4, with_val: bool = True):
    """An object with Run's interface: metrics, result, test_data(), predict()."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 3, 12, 12), dtype=np.uint8)
    labels = np.arange(30) % 3
    calls = []

    def predict(batch, **_):
        calls.append(len(batch))
        logits = np.eye(3)[labels[: len(batch)]] * 2 + rng.random((len(batch), 3)) * 2.5
        return logits / logits.sum(axis=1, keepdims=True)

    metrics = [
        {"epoch": e, "train_loss": 1 / e, "train_acc": 1 - 0.5 / e,
         "val_loss": 1.1 / e if with_val else None, "val_acc": 0.9 - 0.5 / e if with_val else None,
         "lr": 0.1 * 0.5 ** e, "epoch_s": 1.0}
        for e in range(1, epochs + 1)
    ]
    data = SimpleNamespace(images=images, labels=labels, classes=CLASSES)
    return SimpleNamespace(path=path, metrics=metrics, result={"best_epoch": 3, "status": "completed"},
                           test_data=lambda: data, predict=predict, calls=calls)


def _decoded_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        return image.size


def test_plot_run_writes_three_decodable_pngs_and_predicts_once(tmp_path):
    run = _fake_run(tmp_path / "run")
    paths = plot_run(run)
    assert [p.name for p in paths] == ["curves.png", "confusion.png", "predictions.png"]
    assert run.calls == [30]  # the test set is predicted once, shared by two figures
    expected = {"curves.png": (1000, 520), "confusion.png": (570, 450), "predictions.png": (950, 1304)}
    for path in paths:
        assert path.stat().st_size > 1000
        assert _decoded_size(path) == expected[path.name]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_curves_mark_the_best_epoch_and_plot_the_lr(tmp_path):
    fig = curves(_fake_run(tmp_path))
    loss_ax, acc_ax, lr_ax = fig.axes
    best_lines = [l for l in loss_ax.lines if l.get_label() == "best epoch 3"]
    assert best_lines and list(best_lines[0].get_xdata()) == [3, 3]
    assert [l.get_label() for l in acc_ax.lines][:2] == ["train", "val"]
    assert np.allclose(acc_ax.lines[0].get_ydata(), [50, 75, 100 * (1 - 0.5 / 3), 87.5])
    assert np.allclose(lr_ax.lines[0].get_ydata(), [0.05, 0.025, 0.0125, 0.00625])


def test_curves_without_validation_split_show_train_only(tmp_path):
    fig = curves(_fake_run(tmp_path, with_val=False))
    assert [l.get_label() for l in fig.axes[0].lines] == ["train", "best epoch 3"]


def test_curves_of_an_empty_run_is_a_clear_error(tmp_path):
    run = _fake_run(tmp_path)
    run.metrics = []
    with pytest.raises(CnnlabError, match="no metrics"):
        curves(run)


def _outputs() -> Evaluation:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([
        [0.9, 0.05, 0.05], [0.2, 0.7, 0.1],   # second is a mistake at 0.7
        [0.1, 0.8, 0.1], [0.05, 0.05, 0.9],   # fourth is a mistake at 0.9
        [0.3, 0.1, 0.6], [0.4, 0.35, 0.25],   # sixth is a mistake at 0.4
    ])
    return Evaluation(np.zeros((6, 1, 4, 4), np.uint8), labels, probs, CLASSES)


def test_confusion_matrix_rows_are_true_classes():
    out = _outputs()
    counts = confusion_matrix(out.labels, out.predicted, 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]


def test_confusion_figure_labels_per_class_accuracy():
    fig = confusion(None, _outputs())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat (50%)", "dog (50%)", "bird (50%)"]
    assert "accuracy 50.00%" in ax.get_title()


def test_mistakes_only_shows_the_most_confident_mistakes_first():
    out = _outputs()
    assert _choose(out, 10, mistakes_only=True).tolist() == [3, 1, 5]
    fig = predictions(None, n=2, mistakes_only=True, outputs=out)
    assert _captions(fig) == ["bird 90%\ntrue: dog", "dog 70%\ntrue: cat"]


def _captions(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_prediction_grid_is_a_fixed_sample_with_mistakes_highlighted():
    out = _outputs()
    first = predictions(None, n=4, outputs=out)
    second = predictions(None, n=4, outputs=out)
    assert _captions(first) == _captions(second) and len(_captions(first)) == 4
    assert len(first.axes[0].images) == 4 == math.ceil(math.sqrt(4)) ** 2
    frames = first.axes[0].patches
    for caption, frame in zip(first.axes[0].texts, frames):
        predicted, truth = caption.get_text().split(" ")[0], caption.get_text().split("true: ")[1]
        mistake = predicted != truth
        assert (caption.get_color() == "#cf222e") == mistake
        assert frame.get_linewidth() == (3 if mistake else 1)


def test_plot_run_keeps_the_curves_when_the_test_set_cannot_be_predicted(tmp_path):
    run = _fake_run(tmp_path / "run")

    def no_checkpoint(*_, **__):
        raise CnnlabError("Run has no 'best' checkpoint")

    run.predict = no_checkpoint
    with pytest.warns(UserWarning, match="confusion.png and predictions.png skipped.*no 'best' checkpoint"):
        paths = plot_run(run)
    assert [p.name for p in paths] == ["curves.png"] and paths[0].stat().st_size > 1000


def test_curves_have_integer_epoch_ticks_on_every_panel_and_a_constant_lr_without_offset(tmp_path):
    run = _fake_run(tmp_path, epochs=3)
    for row in run.metrics:
        row["lr"] = 1e-3
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = curves(run)
    FigureCanvasAgg(fig).draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    lr_ax = fig.axes[2]
    formatter = lr_ax.yaxis.get_major_formatter()
    assert formatter.offset == 0 and "+" not in formatter.get_offset()  # a 1e-3 scale, no offset
    low, high = lr_ax.get_ylim()
    assert low == 0 and high == pytest.approx(1.5e-3)


def test_plot_run_formats_and_mistakes_file(tmp_path):
    paths = plot_run(_fake_run(tmp_path / "run"), mistakes_only=True, fmt="svg")
    assert [p.name for p in paths] == ["curves.svg", "confusion.svg", "mistakes.svg"]
    assert all(p.read_bytes().startswith(b"<?xml") for p in paths)
    with pytest.raises(CnnlabError, match="png, svg, pdf"):
        plot_run(_fake_run(tmp_path / "run"), fmt="jpeg")
