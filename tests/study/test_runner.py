import os

import pytest
import yaml

from cnnlab.errors import CnnlabError
from cnnlab.study import aggregate, report, run_study
from cnnlab.study.runner import usable_cores
from cnnlab.study.store import read_state

from fakes import CRASH_LR, DIE_LR, dying_train, fake_train


def write_study(tmp_path, lrs, seeds=2, epochs=3, name="s"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": epochs}},
        "grid": {"optim.lr": lrs}, "seeds": seeds,
    }))
    return path


def test_a_crashing_run_is_recorded_and_the_others_finish(tmp_path):
    path = write_study(tmp_path, [0.01, 0.001, CRASH_LR, 0.1])
    events = []
    outcome = run_study(path, jobs=2, out=tmp_path / "studies", train_fn=fake_train, progress=events.append)
    assert outcome.study_dir == tmp_path / "studies" / "s"
    assert len(outcome.completed) == 6
    assert sorted(outcome.failed) == ["optim.lr=9/seed0", "optim.lr=9/seed1"]
    assert [e["done"] for e in events if e["event"] == "done"] == list(range(1, 9))

    state = read_state(outcome.study_dir)
    crashed = state["runs"]["optim.lr=9/seed0"]
    assert crashed["status"] == "failed" and "simulated crash at lr=9.0" in crashed["error"]
    log = (outcome.study_dir / crashed["log"]).read_text()
    assert "Traceback" in log and "RuntimeError: simulated crash" in log
    # threads were split between the two jobs, in the environment and in the config
    threads = max(1, usable_cores() // 2)
    ok_log = (outcome.study_dir / state["runs"]["optim.lr=0.01/seed0"]["log"]).read_text()
    assert f"threads={threads} OMP_NUM_THREADS={threads}" in ok_log

    html = report(outcome.study_dir).read_text()
    assert "Failed runs" in html and "simulated crash at lr=9.0" in html
    rows = {r["variant"]: r for r in aggregate(outcome.study_dir)}
    assert rows["optim.lr=9"]["n"] == 0 and rows["optim.lr=9"]["n_failed"] == 2
    assert rows["optim.lr=0.01"]["n"] == 2 and rows["optim.lr=0.01"]["baseline"]


def test_resume_skips_completed_runs_and_retries_the_rest(tmp_path):
    path = write_study(tmp_path, [0.01, CRASH_LR], seeds=2)
    first = run_study(path, jobs=2, out=tmp_path, train_fn=fake_train)
    assert len(first.completed) == 2 and len(first.failed) == 2

    second = run_study(path, jobs=2, out=tmp_path, train_fn=fake_train)
    assert sorted(second.skipped) == ["optim.lr=0.01/seed0", "optim.lr=0.01/seed1"]
    assert sorted(second.failed) == ["optim.lr=9/seed0", "optim.lr=9/seed1"] and not second.completed
    assert sorted(p.name for p in (first.study_dir / "runs" / "optim.lr=0.01" / "seed0").glob("v*")) == ["v1"]

    # a changed config no longer counts as done: it runs again, in a new version folder
    changed = write_study(tmp_path, [0.01, CRASH_LR], seeds=2, epochs=4)
    third = run_study(changed, jobs=2, out=tmp_path, train_fn=fake_train)
    assert not third.skipped and len(third.completed) == 2
    state = read_state(first.study_dir)
    assert state["runs"]["optim.lr=0.01/seed0"]["path"] == "runs/optim.lr=0.01/seed0/v2"


def test_dry_run_lists_runs_and_writes_nothing(tmp_path):
    path = write_study(tmp_path, [0.1, 0.01, 0.001], seeds=3)
    outcome = run_study(path, dry_run=True, out=tmp_path / "studies", train_fn=fake_train)
    assert len(outcome.runs) == 9 and outcome.dry_run
    assert not (tmp_path / "studies").exists()


def test_a_dying_worker_costs_only_its_run(tmp_path):
    path = write_study(tmp_path, [0.01, DIE_LR, 0.001], seeds=1)
    outcome = run_study(path, jobs=1, out=tmp_path, train_fn=dying_train)
    assert sorted(outcome.completed) == ["optim.lr=0.001/seed0", "optim.lr=0.01/seed0"]
    error = read_state(outcome.study_dir)["runs"]["optim.lr=7/seed0"]["error"]
    assert "died with exit code 3" in error


def test_bad_arguments_are_clear_errors(tmp_path):
    path = write_study(tmp_path, [0.1])
    with pytest.raises(CnnlabError, match="backend 'slurm'"):
        run_study(path, backend="slurm", train_fn=fake_train)
    with pytest.raises(CnnlabError, match="--jobs must be a positive integer"):
        run_study(path, jobs=0, train_fn=fake_train)
    with pytest.raises(CnnlabError, match="not a study folder"):
        report(tmp_path)
