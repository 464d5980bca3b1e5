"""What a study records for a run whose worker was stopped before it could report
(`_stopped_outcome`): completed when its result.json says so (stopped while drawing figures),
else interrupted, with its folder when it can be continued."""

from __future__ import annotations

from cnnlab import runs
from cnnlab.study.runner import DONE, INTERRUPTED, _stopped_outcome

from fakes import fake_train

CONFIG = {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "optim": {"lr": 0.01},
          "train": {"epochs": 2, "seed": 0, "engine": "torch", "threads": 1}}


def test_a_run_stopped_while_drawing_its_figures_counts_as_completed(tmp_path):
    run_dir = fake_train(CONFIG, str(tmp_path), "seed0")  # result.json says completed, no figures yet
    outcome = _stopped_outcome(tmp_path / "seed0")
    assert outcome["status"] == DONE and outcome["path"] == str(run_dir)
    assert outcome["test_acc"] == runs.read_result(run_dir)["test_acc"]
    assert "error" not in outcome


def test_a_run_stopped_mid_training_is_interrupted_and_names_its_folder(tmp_path):
    run_dir = fake_train(CONFIG, str(tmp_path), "seed0")
    runs.write_result(run_dir, {**runs.read_result(run_dir), "status": "running"})  # cut off mid-way
    (run_dir / "last.pt").write_bytes(b"a checkpoint")
    outcome = _stopped_outcome(tmp_path / "seed0")
    assert outcome == {"status": INTERRUPTED, "error": "the study was interrupted", "path": str(run_dir)}


def test_a_run_stopped_before_its_first_checkpoint_has_no_folder_to_continue(tmp_path):
    run_dir = fake_train(CONFIG, str(tmp_path), "seed0")
    runs.write_result(run_dir, {**runs.read_result(run_dir), "status": "running"})
    assert _stopped_outcome(tmp_path / "seed0") == {"status": INTERRUPTED, "error": "the study was interrupted"}
    assert _stopped_outcome(tmp_path / "never-started") == {"status": INTERRUPTED,
                                                            "error": "the study was interrupted"}
