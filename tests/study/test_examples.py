"""The example studies: every profile expands into valid configs; the quick profiles run.

Each quick profile trains for real on MNIST, Fashion-MNIST or CIFAR-10 subsets from
../shared/data (10-30 s each on 2 idle cores). The CIFAR examples share one decoded-data cache,
so the 60,000 JPEGs are decoded once per test session, not once per example.
"""

import os
from pathlib import Path

import pytest
import yaml

from cnnlab.study import expand, load_study, report, run_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STUDIES = sorted(p for p in EXAMPLES.glob("*.yaml")
                 if {"profiles"} <= set(doc := yaml.safe_load(p.read_text())) and {"grid", "variants"} & set(doc))
NAMES = [p.stem for p in STUDIES]


def test_the_five_classic_labs_are_there():
    assert set(NAMES) >= {"bn_and_depth", "cifar10_ablation", "fc_vs_conv", "vgg_bn", "scratch_vs_torch"}


@pytest.mark.parametrize("path", STUDIES, ids=NAMES)
def test_every_profile_expands_into_valid_runs(path):
    profiles = [None, *yaml.safe_load(path.read_text())["profiles"]]
    assert "quick" in profiles
    for profile in profiles:
        study = load_study(path, profile=profile)
        specs = expand(study)
        assert len(specs) == len(study.variants) * len(study.seeds)
        assert all(s.seed in study.seeds for s in specs)
    quick = load_study(path, profile="quick")
    assert len(quick.variants) * len(quick.seeds) <= 8  # quick means quick
    assert all(s.config["train"]["epochs"] <= 2 for s in expand(quick))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("examples-cache"))


@pytest.mark.parametrize("path", STUDIES, ids=NAMES)
def test_quick_profile_runs_and_reports(path, shared_data, shared_cache, tmp_path):
    os.environ["CNNLAB_CACHE"] = shared_cache  # restored by the autouse _private_cache fixture
    # one worker: the suite is CPU-bound on 2 cores, and a second worker would only add a
    # second ~5 s torch import per example (parallel workers are tested in test_runner/signals)
    outcome = run_study(path, profile="quick", jobs=1, out=tmp_path, data_dir=shared_data)
    assert outcome.ok, f"failed runs: {outcome.failed}"
    html = report(outcome.study_dir).read_text()
    assert "Against the baseline" in html and "data:image/png;base64," in html
