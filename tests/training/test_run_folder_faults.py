"""A run folder under faults (issue 12, items 2 and 5): a full disk in the middle of training is
exit 2 naming the file and the run resumes; plots and predictions that cannot be written name
their target; a config.yaml or model.json edited so the model no longer fits its checkpoint,
a checkpoint with pickled objects, a broken config.yaml: exit 2 naming the files, never a
traceback and never torch's advice to load with weights_only=False."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from cnnlab import cli, runs
from cnnlab.errors import ModelError
from cnnlab.training.checkpoint import checkpoint_fits

SPEC = [{"conv": {"out": 8, "k": 3, "pad": 1}, "name": "conv1"}, {"bn": {}, "name": "bn1"}, "relu",
        {"maxpool": 2}, "flatten", {"linear": "classes", "name": "fc"}]
EPOCHS = 3
TORCH_ADVICE = ("weights_only", "Weights only load failed")


def cli_run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())  # unwrapped paragraph


def fail_writes_to(monkeypatch, name: str, after: int = 0, code: int = errno.ENOSPC) -> list:
    """Make the atomic rename onto files called `name` fail with `code` after `after` good ones,
    as a full disk would (the error names the temporary file, as the OS does)."""
    real, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            calls.append(dst)
            if len(calls) > after:
                raise OSError(code, os.strerror(code), str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return calls


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny run whose disk fills up when last.pt is written after epoch 2 (exit 2, resumable),
    then resumed to completion: the folder the other tests copy and break."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("faults")
    config = tmp / "c.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"dataset": "digits", "train_limit": 200, "val_fraction": 0.2},
        "model": {"spec": SPEC}, "optim": {"lr": 0.05},
        "train": {"epochs": EPOCHS, "batch_size": 32, "out": str(tmp / "runs"), "name": "r"},
    }))
    patch = pytest.MonkeyPatch()
    capture = _Capture()
    try:
        fail_writes_to(patch, "last.pt", after=2)  # epochs 0 and 1 saved; epoch 2's write fails
        code, err = capture.main("train", str(config), "--quiet", "--no-plots")
    finally:
        patch.undo()
    folder = tmp / "runs" / "r" / "v1"
    return {"folder": folder, "code": code, "err": err, "interrupted": runs.read_result(folder),
            "resume": capture.main("train", "--resume", str(folder), "--quiet", "--no-plots")}


class _Capture:
    """cli.main with stderr captured, for the module fixture (capsys is per test)."""

    def main(self, *argv):
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(list(argv))
        return code, " ".join(err.getvalue().split())


def test_a_full_disk_during_training_is_exit_2_naming_the_checkpoint_and_the_run_resumes(run_dir):
    folder = run_dir["folder"]
    assert run_dir["code"] == 2, run_dir["err"]
    err = run_dir["err"]
    assert f"Cannot write '{folder / 'last.pt'}': no space is left on the device" in err
    assert ".tmp" not in err and "Traceback" not in err and "internal error" not in err
    assert f"Resume with: cnnlab train --resume {folder}" in err
    assert run_dir["interrupted"]["status"] == "interrupted"
    assert run_dir["interrupted"]["epochs_run"] == 2
    assert run_dir["resume"][0] == 0, run_dir["resume"][1]
    assert runs.read_result(folder)["status"] == "completed"
    assert [row["epoch"] for row in runs.read_metrics(folder / "metrics.csv")] == list(range(1, EPOCHS + 1))
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def copy_run(run_dir, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir["folder"], target)
    return target


def test_plots_that_cannot_be_written_name_their_file(run_dir, tmp_path, capsys, monkeypatch):
    folder = copy_run(run_dir, tmp_path)
    fail_writes_to(monkeypatch, "curves.png", code=errno.EROFS)
    code, _, err = cli_run(capsys, "plot", str(folder))
    assert code == 2
    assert f"Cannot write '{folder / 'curves.png'}': the file system is read-only" in err
    assert ".tmp" not in err and not list(folder.glob(".*.tmp"))


def test_a_predict_csv_that_cannot_be_written_names_it(run_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    target = blocker / "predictions.csv"
    code, _, err = cli_run(capsys, "predict", str(run_dir["folder"]), "--csv", str(target))
    assert code == 2
    assert f"Cannot write '{target}'" in err and "is a file, not a folder" in err


def test_a_run_folder_that_cannot_be_created_names_it(run_dir, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = cli_run(capsys, "train", str(run_dir["folder"] / "config.yaml"), "--out", str(blocker),
                           "--quiet", "--no-plots")
    assert code == 2
    assert f"Cannot write '{blocker / 'r'}'" in err and "internal error" not in err


# --- item 5: run folders that no longer match their checkpoint ---------------------------------


def edit_yaml(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def wider(spec: list) -> list:
    return [{**layer, "conv": {**layer["conv"], "out": 12}} if isinstance(layer, dict) and "conv" in layer
            else layer for layer in spec]


def no_advice(err: str) -> None:
    assert not any(text in err for text in TORCH_ADVICE), err
    assert "Traceback" not in err and "internal error" not in err


def test_resume_with_an_edited_config_is_exit_2_and_writes_nothing(run_dir, tmp_path, capsys):
    folder = copy_run(run_dir, tmp_path)
    result = runs.read_result(folder)
    runs.write_result(folder, {**result, "status": "interrupted"})  # as if stopped mid-way
    edit_yaml(folder / "config.yaml", lambda c: c["model"].update(spec=wider(c["model"]["spec"])))
    model_json = (folder / "model.json").read_text()
    code, _, err = cli_run(capsys, "train", "--resume", str(folder), "--quiet")
    assert code == 2
    assert (f"The model built from '{folder / 'config.yaml'}' does not fit the checkpoint "
            f"'{folder / 'last.pt'}'") in err
    assert "size mismatch for conv1.weight" in err and "cnnlab train " in err
    no_advice(err)
    assert (folder / "model.json").read_text() == model_json  # not overwritten by the edit


@pytest.mark.parametrize("command", ["predict", "plot"])
def test_predict_and_plot_with_an_edited_model_json_are_exit_2(run_dir, tmp_path, capsys, command):
    folder = copy_run(run_dir, tmp_path)
    model = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**model, "ref": wider(model["ref"])}))
    code, _, err = cli_run(capsys, command, str(folder))
    assert code == 2
    assert f"'{folder / 'model.json'}' does not fit the checkpoint '{folder / 'best.pt'}'" in err
    no_advice(err)


def test_an_older_folder_without_model_json_names_its_edited_config(run_dir, tmp_path, capsys):
    folder = copy_run(run_dir, tmp_path)
    (folder / "model.json").unlink()  # folders from before model.json: built from config.yaml
    edit_yaml(folder / "config.yaml", lambda c: c["model"].update(spec=wider(c["model"]["spec"])))
    code, _, err = cli_run(capsys, "predict", str(folder))
    assert code == 2 and f"'{folder / 'config.yaml'}' does not fit the checkpoint" in err
    no_advice(err)


def test_a_checkpoint_with_pickled_objects_is_refused_without_torchs_advice(run_dir, tmp_path, capsys):
    folder = copy_run(run_dir, tmp_path)
    payload = torch.load(folder / "best.pt", weights_only=True)
    payload["extra"] = Path("an object that needs pickle")
    torch.save(payload, folder / "best.pt")
    code, _, err = cli_run(capsys, "predict", str(folder))
    assert code == 2
    assert f"Checkpoint '{folder / 'best.pt'}' holds pickled Python objects" in err
    no_advice(err)


@pytest.mark.parametrize("text", [b"model: [unclosed\n  x: :\n", b"model: 3\n", b"\xff\xfe\x00"])
def test_compare_with_a_broken_config_yaml_is_exit_2(run_dir, tmp_path, capsys, text):
    folder = copy_run(run_dir, tmp_path)
    (folder / "config.yaml").write_bytes(text)
    code, _, err = cli_run(capsys, "compare", str(run_dir["folder"]), str(folder), "-o",
                           str(tmp_path / "report.html"))
    assert code == 2, err
    assert f"'{folder / 'config.yaml'}'" in err and "internal error" not in err


def test_the_numpy_engines_mismatch_is_the_same_error(tmp_path):
    import cnnlab.models as models

    small = models.build(SPEC, (1, 8, 8), 10, engine="scratch")
    big = models.build(wider(SPEC), (1, 8, 8), 10, engine="scratch")
    with pytest.raises(ModelError) as caught, checkpoint_fits(tmp_path / "best.npz", tmp_path / "model.json"):
        big.load_state_dict(small.state_dict())
    text = str(caught.value)
    assert f"The model built from '{tmp_path / 'model.json'}' does not fit the checkpoint" in text
    assert "conv1.weight: expected (12, 1, 3, 3), got (8, 1, 3, 3)" in text
