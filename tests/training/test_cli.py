"""`cnnlab train` / `cnnlab demo` through cnnlab.cli.main: exit codes and messages."""

from __future__ import annotations

import pytest
import yaml

from cnnlab.cli import main

TINY = ["--set", "data.train_limit=200", "--set", "train.threads=1", "--quiet", "--no-plots"]


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--set", "optim.lrr=0.1"], "Did you mean 'lr'?"),
    (["train", "--set", "nonsense"], "section.key=value"),
    (["train", "--model", "smal_cnn"], "Did you mean 'small_cnn'?"),
    (["train", "missing.yaml"], "does not exist"),
    (["train", "--resume", "nowhere"], "not a run folder"),
    (["train", "--resume", "runs/x/v1", "--epochs", "3"], "drop --epochs"),
])
def test_bad_input_exits_2_with_one_paragraph(argv, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err.replace("\n", " ")
    assert "Traceback" not in err and "\n\n" not in err.strip()


def test_train_from_yaml_with_flags_prints_the_run_folder(tmp_path, capsys, one_thread):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": "small_cnn"}, "train": {"batch_size": 32}}))
    code = main(["train", str(config), "--epochs", "1", "--lr", "0.02", "--out", str(tmp_path / "r"),
                 "--name", "cli", *TINY])
    out = capsys.readouterr().out
    assert code == 0 and "test accuracy" in out
    run_dir = tmp_path / "r" / "cli" / "v1"
    assert f"run folder: {run_dir}" in out
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.02 and saved["train"]["epochs"] == 1
    assert saved["data"]["train_limit"] == 200


def test_demo_trains_and_writes_plots(tmp_path, capsys, one_thread):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and str(tmp_path / "demo" / "v1") in out
    assert (tmp_path / "demo" / "v1" / "result.json").is_file()


def test_a_diverged_run_exits_non_zero_and_says_why(tmp_path, capsys, one_thread):
    code = main(["train", "--model", "mlp", "--dataset", "digits", "--epochs", "3", "--lr", "1e6",
                 "--out", str(tmp_path), "--quiet", "--no-plots", "--set", "data.train_limit=200"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out.startswith("diverged:")
    assert "error: training diverged: non-finite loss" in err and "Traceback" not in err
    assert (tmp_path / "mlp-digits" / "v1" / "metrics.csv").is_file()  # metrics kept


def test_relative_data_dir_is_stored_absolute_and_resume_takes_data_dir(tmp_path, capsys, monkeypatch,
                                                                        one_thread):
    import shutil
    from pathlib import Path

    from cnnlab.errors import TrainingInterrupted
    from cnnlab.training import Callback, train

    import importlib.util

    spec = importlib.util.spec_from_file_location("data_fixtures", Path(__file__).parents[1] / "data" / "conftest.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)  # tests/data's fake MNIST writer
    write_idx_dataset = fixtures.write_idx_dataset

    class StopAt2(Callback):
        def on_epoch_begin(self, epoch, logs):
            if epoch == 2:
                raise KeyboardInterrupt

    first, second = tmp_path / "first", tmp_path / "second"
    write_idx_dataset(first / "data" / "mnist", n_train=60, n_test=20, size=8)
    second.mkdir()
    monkeypatch.chdir(first)
    config = {"data": {"dataset": "mnist", "data_dir": "data", "download": False},
              "model": {"name": "mlp"}, "train": {"epochs": 3, "batch_size": 16, "out": str(tmp_path / "runs")}}
    with pytest.raises(TrainingInterrupted):
        train(config, quiet=True, callbacks=[StopAt2()])
    run_dir = tmp_path / "runs" / "mlp-mnist" / "v1"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["data_dir"] == str(first / "data")

    shutil.move(first / "data", tmp_path / "moved")  # the data moved: resume says where it is now
    monkeypatch.chdir(second)
    assert main(["train", "--resume", str(run_dir), "--data-dir", "../moved", "--quiet", "--no-plots"]) == 0
    assert "completed" in capsys.readouterr().out
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["data_dir"] == str(tmp_path / "moved")
    assert list(second.iterdir()) == []  # no stray folder where the resume ran


def test_debug_is_accepted_after_the_subcommand(tmp_path, monkeypatch):
    from cnnlab.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "nowhere"]) == 2
    with pytest.raises(ConfigError, match="not a run folder"):  # --debug shows the traceback
        main(["train", "--resume", "nowhere", "--debug"])


def _leave_in_a_child(code: str) -> "subprocess.CompletedProcess":
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)


def test_the_command_exits_with_its_code_after_the_exit_handlers_and_flushed_output():
    """With torch loaded the command skips the interpreter's teardown, not the exit handlers."""
    done = _leave_in_a_child(
        "import atexit, sys, torch\n"
        "from cnnlab.utils import exit_skipping_teardown as leave\n"
        "atexit.register(lambda: print('handler ran'))\n"
        "print('buffered, no newline', end='')\n"
        "print('to stderr', file=sys.stderr, end='')\n"
        "leave(3)\n")
    assert done.returncode == 3, done.stderr
    assert done.stdout == "buffered, no newlinehandler ran\n" and done.stderr == "to stderr"


def test_the_command_waits_for_a_thread_that_is_still_working(tmp_path):
    target = tmp_path / "written-by-the-thread"
    done = _leave_in_a_child(
        "import threading, time, torch\n"
        "from cnnlab.utils import exit_skipping_teardown as leave\n"
        f"threading.Thread(target=lambda: (time.sleep(0.3), open({str(target)!r}, 'w').write('x'))).start()\n"
        "leave(0)\n")
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "x"
