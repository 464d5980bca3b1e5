"""The example studies: every profile expands into valid configs; the quick profiles run.

Running a quick profile takes about a minute on 2 cores (real training on MNIST, Fashion-MNIST
or CIFAR-10 subsets from ../shared/data), too long for the default suite's budget, so those runs
happen when CNNLAB_EXAMPLES=1 is set.
"""

import os
from pathlib import Path

import pytest
import yaml

from cnnlab.study import expand, load_study, report, run_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STUDIES = sorted(p for p in EXAMPLES.glob("*.yaml") if "profiles" in yaml.safe_load(p.read_text()))
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


@pytest.mark.skipif(os.environ.get("CNNLAB_EXAMPLES") != "1",
                    reason="set CNNLAB_EXAMPLES=1 to run the examples' quick profiles (~1 min each)")
@pytest.mark.parametrize("path", STUDIES, ids=NAMES)
def test_quick_profile_runs_and_reports(path, shared_data, tmp_path):
    outcome = run_study(path, profile="quick", jobs=2, out=tmp_path, data_dir=shared_data)
    assert outcome.ok, f"failed runs: {outcome.failed}"
    html = report(outcome.study_dir).read_text()
    assert "Against the baseline" in html and "data:image/png;base64," in html
