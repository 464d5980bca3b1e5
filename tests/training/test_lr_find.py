"""The LR range test: exponential sweep, smoothed loss, stop on divergence, a suggestion, --apply."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cnnlab.cli import main
from cnnlab.training.lr_find import lr_find, lr_schedule, suggest

TINY = {"data": {"dataset": "digits", "train_limit": 200}, "model": {"name": "mlp"},
        "train": {"batch_size": 16, "threads": 1}}


def test_schedule_is_exponential_and_suggestion_is_the_steepest_descent():
    lrs = lr_schedule(1e-4, 1.0, 41)
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(lrs[1:] / lrs[:-1], lrs[1] / lrs[0])
    x = np.log10(lrs)
    loss = 2 - np.tanh(3 * (x + 2)) + np.where(x > -0.5, 20 * (x + 0.5) ** 2, 0)  # falls fastest at 1e-2
    assert suggest(lrs, loss) == pytest.approx(1e-2, rel=0.3)


@pytest.mark.parametrize("engine", ["torch", "scratch"])
def test_sweep_stops_on_divergence_and_suggests_an_lr_inside_it(engine):
    finding = lr_find({**TINY, "train": {**TINY["train"], "engine": engine}},
                      start_lr=1e-4, end_lr=1e4, steps=80)
    n = len(finding.lrs)
    assert finding.diverged and 10 < n < 80  # 1e4 is far past any useful LR
    assert np.allclose(finding.lrs, lr_schedule(1e-4, 1e4, 80)[:n])
    assert finding.smoothed[-1] > 4 * np.nanmin(finding.smoothed[:-1]) or not np.isfinite(finding.smoothed[-1])
    assert finding.lrs[0] < finding.suggestion < finding.min_loss_lr
    assert finding.smoothed[np.searchsorted(finding.lrs, finding.suggestion)] < finding.smoothed[0]


def test_lr_find_command_plots_and_applies(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["lr-find", str(config), "--steps", "60", "--start-lr", "1e-4", "--end-lr", "1e3",
                 "--apply"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    suggested = float(out.split("suggested lr: ")[1].split()[0])
    applied = yaml.safe_load((tmp_path / "exp.lr.yaml").read_text())
    assert applied["optim"]["lr"] == pytest.approx(suggested, rel=1e-2)
    assert applied["model"]["name"] == "mlp" and applied["data"]["train_limit"] == 200
    assert yaml.safe_load(config.read_text()) == TINY  # the original is left alone
