"""Adaptive seeds (issue 13, item 6): `seeds: {min, max, until_ci}` adds seeds to the compared
variants, one round at a time, until each comparison's 95% CI is narrow enough or max is reached."""

from __future__ import annotations

import pytest
import yaml

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.study import report, run_study
from cnnlab.study.results import from_study_dir, seed_decisions
from cnnlab.study.spec import parse_study
from cnnlab.study.store import read_state
from cnnlab.utils import write_json

from fakes import planted_train

ADAPTIVE = {"min": 3, "max": 4, "until_ci": 0.5}


def write_study(tmp_path, seeds=ADAPTIVE):
    path = tmp_path / "adaptive.yaml"
    path.write_text(yaml.safe_dump({
        "base": {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 2}},
        "grid": {"optim.lr": [0.01, 0.02, 0.05]}, "seeds": seeds,
    }))
    return path


def seeds_run(state) -> dict:
    out: dict = {}
    for entry in state["runs"].values():
        out.setdefault(entry["variant"], []).append(entry["seed"])
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("block, fragment", [
    ({"min": 1, "max": 4, "until_ci": 0.5}, "'min' must be an integer of at least 2"),
    ({"min": 3, "max": 2, "until_ci": 0.5}, "'max' must be an integer of at least 3"),
    ({"min": 3, "max": 4, "until_ci": 0}, "'until_ci' must be a positive number"),
    ({"min": 3, "max": 4, "until_ci": 0.5, "untill": 1}, "unknown key 'untill'"),
    ({"min": 3, "until_ci": 0.5}, "needs 'max'"),
])
def test_bad_adaptive_blocks_are_refused(block, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_study({"base": {}, "seeds": block})


def test_cli_refuses_an_unknown_key_with_exit_2(tmp_path, capsys):
    path = write_study(tmp_path, {**ADAPTIVE, "until": 1})
    assert main(["study", str(path), "--out", str(tmp_path), "--dry-run"]) == 2
    assert "unknown key 'until'" in capsys.readouterr().err


def test_seeds_stop_early_when_the_spread_is_tiny_go_to_max_when_large_and_resume(tmp_path, capsys):
    path = write_study(tmp_path)
    outcome = run_study(path, jobs=2, out=tmp_path, train_fn=planted_train)
    assert outcome.ok and outcome.rounds == 2
    # lr=0.02 differs from the reference by a near-constant point per seed: 3 seeds pin it down;
    # lr=0.05's difference swings by points from seed to seed: it and its reference go to max
    state = read_state(outcome.study_dir)
    assert seeds_run(state) == {
        "optim.lr=0.01": [0, 1, 2, 3], "optim.lr=0.02": [0, 1, 2], "optim.lr=0.05": [0, 1, 2, 3]}
    data = from_study_dir(outcome.study_dir)
    decisions = {d.variant: d for d in seed_decisions(data)}
    assert decisions["optim.lr=0.02"].status == "met" and decisions["optim.lr=0.02"].half_width < 0.5
    assert decisions["optim.lr=0.05"].status == "max" and decisions["optim.lr=0.05"].half_width > 0.5
    text = report(outcome.study_dir).with_suffix(".md").read_text()
    assert "## Adaptive seeds" in text and "CI target met: ±" in text and "max seeds reached (4)" in text
    # the variant with fewer seeds is still paired with its reference, on the seeds they share
    assert "paired, 3 seeds" in text and "paired, 4 seeds" in text

    # as a killed study leaves it: the second round's runs were running and have no result yet
    for key in ("optim.lr=0.01/seed3", "optim.lr=0.05/seed3"):
        state["runs"][key].update(status="running")
        (outcome.study_dir / state["runs"][key]["path"] / "result.json").unlink()
    write_json(outcome.study_dir / "study.json", state)

    assert main(["study", str(path), "--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "adaptive seeds: 3..4 per variant" in out and "the count is adaptive" in out
    assert "[todo] runs/optim.lr=0.05/seed3" in out and "[done] runs/optim.lr=0.02/seed2" in out

    second = run_study(path, jobs=1, out=tmp_path, train_fn=planted_train)
    assert sorted(second.completed) == ["optim.lr=0.01/seed3", "optim.lr=0.05/seed3"]
    assert len(second.skipped) == 9 and second.rounds == 2
    assert seeds_run(read_state(second.study_dir)) == seeds_run(state)
