"""One study per folder (a lock that names its holder), and a half-finished study's report
telling completed, failed, interrupted and not-started runs apart (issue 12, D)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cnnlab.study import aggregate, report, run_study
from cnnlab.study.lock import LOCK_FILE, StudyLocked, study_lock
from cnnlab.study.runner import StudyInterrupted
from cnnlab.study.store import read_state, run_status

from fakes import CRASH_LR, fake_train

ROOT = Path(__file__).resolve().parents[2]
SIGNAL_LR = 3.0  # optim.lr at which the fake trainer sends SIGTERM to the study


def signalling_train(config: dict, out: str, name: str) -> Path:
    if float(config["optim"]["lr"]) == SIGNAL_LR:
        os.kill(os.getppid(), signal.SIGTERM)  # the study process, as `kill <pid>` would
        time.sleep(60)  # stopped by the study long before this ends
    return fake_train(config, out, name)


def write_study(tmp_path: Path, lrs, name="s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 2}},
        "grid": {"optim.lr": lrs}, "seeds": 1,
    }))
    return path


def test_a_second_study_on_a_locked_folder_names_the_holder(tmp_path):
    study = write_study(tmp_path, [0.01])
    folder = tmp_path / "studies" / "s"
    with study_lock(folder, command="cnnlab study s.yaml") as holder:
        with pytest.raises(StudyLocked, match=rf"in use by another `cnnlab study`: pid {os.getpid()} on host "
                                              rf"{socket.gethostname()}, started 20\d\d-.*: cnnlab study s.yaml"):
            run_study(study, out=tmp_path / "studies", train_fn=fake_train)
        proc = subprocess.run([sys.executable, "-m", "cnnlab", "study", str(study), "--out", str(tmp_path / "studies")],
                              capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 2, proc.stderr
        assert f"pid {os.getpid()} on host {socket.gethostname()}, started {holder['started']}" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (folder / LOCK_FILE).exists()  # released and removed
    assert run_study(study, out=tmp_path / "studies", train_fn=fake_train).completed == ["optim.lr=0.01/seed0"]


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "studies" / "s"
    folder.mkdir(parents=True)
    (folder / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                "started": "2026-01-01T00:00:00+00:00"}))
    outcome = run_study(write_study(tmp_path, [0.01]), out=tmp_path / "studies", train_fn=fake_train)
    assert outcome.completed == ["optim.lr=0.01/seed0"]
    assert not (folder / LOCK_FILE).exists()


def test_a_half_finished_study_tells_its_runs_apart(tmp_path):
    # one run completes, one crashes, the third gets the study SIGTERMed, the fourth never starts
    study = write_study(tmp_path, [0.01, CRASH_LR, SIGNAL_LR, 0.001])
    with pytest.raises(StudyInterrupted, match=r"stopped by SIGTERM: 1 run\(s\) interrupted .* 1 not started, "
                                                r"1 completed, 1 failed") as info:
        run_study(study, jobs=1, out=tmp_path / "studies", train_fn=signalling_train)
    assert info.value.signum == signal.SIGTERM
    folder = tmp_path / "studies" / "s"
    state = read_state(folder)
    assert {k: r["status"] for k, r in state["runs"].items()} == {
        "optim.lr=0.01/seed0": "completed", "optim.lr=9/seed0": "failed", "optim.lr=3/seed0": "interrupted",
        "optim.lr=0.001/seed0": "pending"}
    assert {k: run_status(r, folder) for k, r in state["runs"].items()}["optim.lr=0.001/seed0"] == "not started"

    rows = {r["variant"]: r for r in aggregate(folder)}
    assert (rows["optim.lr=9"]["n_failed"], rows["optim.lr=9"]["n_interrupted"], rows["optim.lr=9"]["n_not_started"]) == (1, 0, 0)
    assert (rows["optim.lr=3"]["n_failed"], rows["optim.lr=3"]["n_interrupted"]) == (0, 1)
    assert (rows["optim.lr=0.001"]["n_failed"], rows["optim.lr=0.001"]["n_not_started"]) == (0, 1)
    text = report(folder, tmp_path / "report.html").with_suffix(".md").read_text()
    assert "4 (1 completed, 1 failed, 1 interrupted, 1 not started)" in text
    assert "0 (+1 not started)" in text and "0 (+1 interrupted)" in text and "0 (+1 failed)" in text


def test_a_running_entry_without_a_live_study_reads_as_interrupted(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    entry = {"status": "running"}
    assert run_status(entry, folder) == "interrupted"  # its study died (e.g. kill -9)
    with study_lock(folder):
        assert run_status(entry, folder) == "running"
    assert run_status({"status": "pending"}) == "not started"


STOP_LR = 4.0  # optim.lr at which the fake trainer stops as the trainer does on its own SIGTERM


def self_stopping_train(config: dict, out: str, name: str) -> Path:
    if float(config["optim"]["lr"]) == STOP_LR:
        from cnnlab.errors import TrainingInterrupted

        raise TrainingInterrupted("Training stopped by Ctrl-C or SIGTERM after epoch 1 of 2")
    return fake_train(config, out, name)


def test_a_worker_stopped_on_its_own_costs_only_its_run(tmp_path):
    # `kill <worker pid>`: that run is interrupted, the worker exits, the next run gets a new one
    study = write_study(tmp_path, [STOP_LR, 0.01, 0.001])
    outcome = run_study(study, jobs=1, out=tmp_path / "studies", train_fn=self_stopping_train)
    assert outcome.interrupted == ["optim.lr=4/seed0"] and not outcome.failed and not outcome.ok
    assert sorted(outcome.completed) == ["optim.lr=0.001/seed0", "optim.lr=0.01/seed0"]
    assert read_state(outcome.study_dir)["runs"]["optim.lr=4/seed0"]["status"] == "interrupted"
