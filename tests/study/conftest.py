"""Study fixtures shared by the report tests: one tiny real study, run once per session."""

from __future__ import annotations

import pytest
import yaml

from cnnlab.study import run_study

from fakes import fake_train


@pytest.fixture(scope="session")
def lr_study(tmp_path_factory):
    """A 3-level learning-rate grid x 3 seeds, trained by the fake trainer through the real runner.

    Tests write reports into it (the same bytes each time); they must not change its runs."""
    tmp = tmp_path_factory.mktemp("study")
    path = tmp / "lr.yaml"
    path.write_text(yaml.safe_dump({
        "name": "lr", "description": "Learning rate against accuracy.",
        "base": {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 5}},
        "grid": {"optim.lr": [0.01, 0.001, 0.0001]}, "seeds": 3, "baseline": "lr=0.01",
        "report": {"min_effect": 1.0},
    }))
    outcome = run_study(path, jobs=2, out=tmp, train_fn=fake_train)
    assert outcome.ok
    return outcome.study_dir
