"""Hyperparameter search on Optuna (issue 13, item 7): trials as run folders, SQLite storage in
the study folder, resume, pruning, the best configuration re-run on the test set, the report."""

from __future__ import annotations

import optuna
import pytest
import yaml

from cnnlab.cli import main
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.runs import read_result
from cnnlab.study import report, run_study, search_results
from cnnlab.study.search import storage_url
from cnnlab.study.spec import load_study, parse_study
from cnnlab.study.search import Search
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


def test_search_runs_trials_prunes_reruns_the_best_on_the_test_set_and_resumes(tmp_path, capsys):
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
    assert "| optim.lr |" in text.split("### Parameter importances")[1]
    assert "re-run over 3 fresh seed(s) (1, 2, 3; the trials used seed 0)" in text and "95% CI" in text
    assert "<h2>Hyperparameter search</h2>" in (folder / "report.html").read_text()
    results = search_results(folder)  # the same from Python
    assert len(results["trials"]) == 6 and results["best"]["number"] == best.number
    assert set(results["importances"]) == {"optim.lr", "train.batch_size"}
    rerun = results["rerun"]
    assert rerun["seeds"] == [1, 2, 3] and rerun["ci_low"] < rerun["mean"] < rerun["ci_high"]

    # as a study killed mid-trial leaves it: a trial still running in the storage
    stale = found.ask({"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
                       "train.batch_size": optuna.distributions.CategoricalDistribution([32, 64])})
    path = write_study(tmp_path, trials=8)
    assert main(["study", str(path), "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "search study search: 8 Optuna trials" in out and "trials do not use the test set" in out
    assert "2 trial(s) to run" in out and "search optim.lr float in [0.0001, 1], log scale" in out

    second = run_study(path, jobs=1, out=tmp_path, train_fn=search_train)
    trials = optuna.load_study(study_name="search", storage=storage_url(folder)).trials
    assert len(trials) == 9 and trials[6].state == optuna.trial.TrialState.FAIL
    assert trials[7].user_attrs["retry_of"] == 6 and trials[7].params == stale.params
    # the finished trials were not run again: one version folder each, none for the stale one
    assert trial_dirs(folder) == [f"runs/trial-000{n}/seed0/v1" for n in (0, 1, 2, 3, 4, 5, 7, 8)]
    assert sorted(second.completed + second.pruned)[-2:] == ["trial-0007/seed0", "trial-0008/seed0"]
    text = report(folder).with_suffix(".md").read_text()
    assert "failed (interrupted; retried as trial 7)" in text and "(retry of trial 6)" in text


def test_a_real_trial_reports_epochs_from_the_fit_loop_is_pruned_and_leaves_the_test_set_alone(tmp_path):
    """The worker's path for one trial, in this process: `train_trial` on the real trainer with
    the pruning callback, against a storage where an earlier trial did far better at epoch 1."""
    from cnnlab.study.runner import train_with_cnnlab
    from cnnlab.study.search import TrialRef, train_trial

    url = storage_url(tmp_path)
    found = optuna.create_study(study_name="s", storage=url, direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    lr = optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)
    found.add_trial(optuna.trial.create_trial(params={"optim.lr": 0.05}, distributions={"optim.lr": lr},
                                              value=1.0, intermediate_values={1: 1.0, 2: 1.0}))
    trial = found.ask({"optim.lr": lr})
    ref = TrialRef(url, "s", trial._trial_id, trial.number, True, 1, 0)
    config = {"data": {"dataset": "digits", "train_limit": 200, "val_fraction": 0.2}, "model": {"name": "mlp"},
              "optim": {"lr": 1e-4}, "train": {"epochs": 3, "batch_size": 64}}
    run_dir = train_trial(config, str(tmp_path / "runs"), "seed0", ref=ref, train_fn=train_with_cnnlab)
    result = read_result(run_dir)
    assert result["status"] == "pruned" and result["epochs_run"] == 1 and "median pruner" in result["stop_reason"]
    assert result["test_acc"] is None and result["test_evaluated"] is False and 0 < result["best_val_acc"] < 1
    assert found.trials[trial.number].intermediate_values == {1: pytest.approx(result["best_val_acc"])}
    assert (run_dir / "curves.png").is_file() and not (run_dir / "confusion.png").exists()


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


def test_the_example_search_validates_in_every_profile(tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "lr_search.yaml"
    for profile in (None, "quick"):
        study = load_study(example, profile=profile)
        Search(study, tmp_path / "unused", create=False)  # every range end gives a valid config
        assert not (tmp_path / "unused").exists()
    quick = load_study(example, profile="quick")
    assert quick.search.trials <= 4 and len(quick.seeds) <= 2 and quick.profile_set["train.epochs"] <= 2
