"""A study folder and a report that cannot be written (issue 12, item 2): exit 2 naming the
target (never a temporary file), nothing half-written."""

from __future__ import annotations

import errno
import os

import yaml

from cnnlab import cli
from cnnlab.study import run_study

from fakes import fake_train


def write_study(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "base": {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 2}},
        "grid": {"optim.lr": [0.01]}, "seeds": 1,
    }))
    return path


def test_a_study_folder_that_cannot_be_created_is_exit_2_naming_it(tmp_path, capsys):
    blocker = tmp_path / "studies"
    blocker.write_text("a file, not a folder")
    assert cli.main(["study", str(write_study(tmp_path)), "--out", str(blocker)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: Cannot write '{blocker / 's'}': a part of the path is a file, not a folder" in err


def test_a_report_that_cannot_be_written_is_exit_2_naming_it(tmp_path, capsys, monkeypatch):
    outcome = run_study(write_study(tmp_path), jobs=1, out=tmp_path, train_fn=fake_train)
    assert outcome.ok
    real = os.replace

    def full_disk(src, dst, *args, **kwargs):
        if str(dst).endswith("report.html"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    target = tmp_path / "out" / "report.html"
    assert cli.main(["report", str(outcome.study_dir), "-o", str(target)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: Cannot write '{target}': no space is left on the device" in err and ".tmp" not in err
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))
