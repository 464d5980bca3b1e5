"""Hyperparameter search on Optuna (issue 13, item 7): trials as run folders, SQLite storage in
the study folder, resume, pruning, the best configuration re-run on the test set, the report."""

from __future__ import annotations

import optuna
import pytest
import yaml

from cnnlab.cli import main
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.runs import read_result
from cnnlab.study import report, run_study
from cnnlab.study.search import storage_url
from cnnlab.study.spec import parse_study
from cnnlab.study.store import read_state

from fakes import search_train

PARAMETERS = {"optim.lr": {"low": 1e-4, "high": 1.0, "log": True}, "train.batch_size": {"choices": [32, 64]}}


def write_study(tmp_path, trials=6, startup=3, epochs=3, rerun_seeds=3, **search):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"data": {"dataset": "digits", "val_fraction": 0.2}, "model": {"name": "mlp"},
                 "train": {"epochs": epochs}},
        "search": {"parameters": PARAMETERS, "trials": trials, "pruning": {"startup_trials": startup},
                   "sampler_seed": 0, "rerun_seeds": rerun_seeds, **search},
    }))
    return path


def trial_dirs(study_dir):
    return sorted(p.relative_to(study_dir).as_posix() for p in study_dir.glob("runs/trial-*/seed0/v*"))


def test_search_runs_trials_prunes_and_reruns_the_best_on_the_test_set(tmp_path):
    outcome = run_study(write_study(tmp_path), jobs=2, out=tmp_path, train_fn=search_train)
    folder = outcome.study_dir
    assert (folder / "search.db").is_file()
    found = optuna.load_study(study_name="search", storage=storage_url(folder))
    states = [t.state for t in found.trials]
    assert len(states) == 6 and outcome.search["finished"] == 6
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 3  # the pruner's startup trials
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1  # far-off learning rates fall behind
    assert len(trial_dirs(folder)) == 6
    for t in found.trials:  # every trial is a run folder, trained without the test set
        result = read_result(folder / t.user_attrs["path"])
        assert result["test_acc"] is None and result["test_evaluated"] is False
        if t.state == optuna.trial.TrialState.PRUNED:
            assert result["status"] == "pruned" and result["epochs_run"] < 3
    best = found.best_trial
    state = read_state(folder)
    assert sorted(state["runs"]) == ["best/seed1", "best/seed2", "best/seed3"]
    assert state["variants"][0]["changes"] == best.params and state["search"]["best_trial"] == best.number
    for entry in state["runs"].values():  # only the re-runs are evaluated on the test set
        assert read_result(folder / entry["path"])["test_acc"] is not None

    text = report(folder).with_suffix(".md").read_text()
    assert "## Hyperparameter search" in text and "**The trials do not use the test set**" in text
    assert "| trial | optim.lr | train.batch_size | val acc (%) | epochs | state |" in text
    assert "| pruned |" in text and "| complete |" in text
    assert f"- trial {best.number}: validation accuracy {best.value * 100:.2f}%" in text
    assert "### Parameter importances" in text and "| optim.lr |" in text.split("### Parameter importances")[1]
    assert "re-run over 3 fresh seed(s) (1, 2, 3; the trials used seed 0)" in text and "95% CI" in text
    assert "## Hyperparameter search" in (folder / "report.html").read_text() or "Hyperparameter search" in (
        folder / "report.html").read_text()


def test_an_interrupted_search_keeps_finished_trials_and_retries_running_ones(tmp_path, capsys):
    path = write_study(tmp_path, trials=2, startup=5, epochs=2, rerun_seeds=1)
    first = run_study(path, jobs=1, out=tmp_path, train_fn=search_train)
    folder = first.study_dir
    assert len(first.completed) == 3  # 2 trials, 1 re-run
    # as a study killed mid-trial leaves it: a trial still running in the storage
    found = optuna.load_study(study_name="search", storage=storage_url(folder))
    stale = found.ask({"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
                       "train.batch_size": optuna.distributions.CategoricalDistribution([32, 64])})
    path = write_study(tmp_path, trials=4, startup=5, epochs=2, rerun_seeds=1)

    assert main(["study", str(path), "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "search study search: 4 Optuna trials" in out and "trials do not use the test set" in out
    assert "2 trial(s) to run" in out and "search optim.lr float in [0.0001, 1], log scale" in out

    second = run_study(path, jobs=1, out=tmp_path, train_fn=search_train)
    trials = optuna.load_study(study_name="search", storage=storage_url(folder)).trials
    assert len(trials) == 5 and trials[stale.number].state == optuna.trial.TrialState.FAIL
    assert trials[3].user_attrs["retry_of"] == stale.number and trials[3].params == stale.params
    # the two finished trials were not run again: one version folder each
    assert trial_dirs(folder) == [f"runs/trial-000{n}/seed0/v1" for n in (0, 1, 3, 4)]
    assert sorted(second.completed + second.pruned) == ["trial-0003/seed0", "trial-0004/seed0"] + (
        ["best/seed1"] if "best/seed1" in second.completed else [])
    text = report(folder).with_suffix(".md").read_text()
    assert f"failed (interrupted; retried as trial 3)" in text and "(retry of trial 2)" in text


def test_search_with_real_training_keeps_the_test_set_for_the_rerun(tmp_path):
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"data": {"dataset": "digits", "train_limit": 300, "val_fraction": 0.2},
                 "model": {"name": "mlp"}, "train": {"epochs": 2, "batch_size": 64}},
        "search": {"parameters": {"optim.lr": {"low": 0.01, "high": 0.2, "log": True}}, "trials": 2,
                   "rerun_seeds": 1, "pruning": {"startup_trials": 1}},
    }))
    outcome = run_study(path, jobs=1, out=tmp_path)
    assert outcome.ok and len(outcome.completed) + len(outcome.pruned) == 3
    state = read_state(outcome.study_dir)
    trial = outcome.study_dir / "runs" / "trial-0000" / "seed0" / "v1"
    result = read_result(trial)
    assert result["status"] == "completed" and result["test_acc"] is None and 0 < result["best_val_acc"] <= 1
    assert (trial / "curves.png").is_file() and not (trial / "confusion.png").exists()
    rerun = outcome.study_dir / state["runs"]["best/seed1"]["path"]
    assert 0 < read_result(rerun)["test_acc"] <= 1 and (rerun / "confusion.png").is_file()


@pytest.mark.parametrize("study, fragment", [
    ({"grid": {"optim.lr": [0.1]}}, "has both 'search:' and 'grid:'"),
    ({"search": {"parameters": {"optim.lr": {"low": 0.1, "high": 0.01}}}}, "needs low < high"),
    ({"search": {"parameters": {"optim.lr": {"low": 0, "high": 0.1, "log": True}}}}, "'low' must be positive"),
    ({"search": {"parameters": {"optim.lr": {"low": 0.01, "high": 0.1}}, "objective": "test_acc"}},
     "'objective' must be one of: val_acc"),
    ({"search": {"parameters": {"optim.lr": {"low": 0.01, "high": 0.1}}, "direction": "minimize"}},
     "must be maximize"),
    ({"search": {"parameters": {"optim.lr": {"low": 0.01, "high": 0.1}}, "trails": 3}}, "unknown key 'trails'"),
])
def test_bad_search_blocks_are_refused(study, fragment):
    data = {"base": {}, "search": {"parameters": PARAMETERS}, **study}
    with pytest.raises(ConfigError, match=fragment):
        parse_study(data)


def test_settings_that_fail_validation_and_unsupported_setups_fail_before_any_trial(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": {"data": {"dataset": "digits"}}, "search": {
        "parameters": {"optim.lr": {"low": -1.0, "high": 0.1}}, "trials": 2}}))
    with pytest.raises(CnnlabError, match="optim.lr"):
        run_study(path, out=tmp_path, train_fn=search_train)
    assert not (tmp_path / "bad" / "search.db").exists()
    with pytest.raises(CnnlabError, match="runs on the local backend"):
        run_study(write_study(tmp_path), backend="ray", out=tmp_path, train_fn=search_train)
    path.write_text(yaml.safe_dump({"base": {"data": {"dataset": "digits", "val_fraction": 0}}, "search": {
        "parameters": PARAMETERS, "trials": 2}}))
    with pytest.raises(CnnlabError, match="data.val_fraction is 0"):
        run_study(path, out=tmp_path, train_fn=search_train)
