"""Factor effects, comparable groups, Holm and power on synthetic studies (no training).

The 2x2 factorial has a planted BN effect only at depth 3 (an interaction) and a planted depth
effect without BN; the analysis must find both, at the sizes planted, and nothing else."""

import math
import random
import re
import zlib

import pytest

from cnnlab.study import effects, stats
from cnnlab.study.report import Image, build_document, render_markdown
from cnnlab.study.results import RunEntry, StudyData, aggregate_rows, analysis
from cnnlab.runs import RunRecord

SEEDS = [0, 1, 2, 3, 4]
NOISE = 0.002


def truth(bn: bool, depth: int, dataset: str) -> float:
    base = 0.90 if dataset == "mnist" else 0.80
    bn_effect = 0.02 if (bn and depth == 3) else 0.0  # BN helps by 2 points at depth 3 only
    depth_effect = -0.01 if depth == 2 else 0.0  # and depth 2 costs 1 point everywhere
    return base + bn_effect + depth_effect


def synthetic_study(seeds=SEEDS, datasets=("mnist", "fashion-mnist"), baseline="model.bn=true, model.conv_blocks=3",
                    min_effect=None, profile=None, profile_set=None) -> StudyData:
    rng = random.Random(42)
    variants, runs = [], []
    for dataset in datasets:
        suffix = "" if dataset == "mnist" else " Fashion"
        for bn in (True, False):
            for depth in (3, 2):
                name = f"model.bn={'true' if bn else 'false'}, model.conv_blocks={depth}{suffix}"
                changes = {"model.bn": bn, "model.conv_blocks": depth}
                if dataset != "mnist":
                    changes["data.dataset"] = dataset
                variants.append({"name": name, "slug": name, "changes": changes})
                for seed in seeds:
                    # a per-seed offset shared by all variants makes pairing by seed pay off
                    acc = truth(bn, depth, dataset) + 0.01 * math.sin(seed) + rng.gauss(0, NOISE)
                    record = RunRecord(path=None, config={}, metrics=[], result={"status": "completed", "test_acc": acc})
                    runs.append(RunEntry(name, seed, "completed", record))
    return StudyData(name="synthetic", description="", base={"data": {"dataset": "mnist"}, "model": {"name": "deep_cnn"},
                     "train": {"epochs": 2}}, variants=variants, baseline=baseline, runs=runs, seeds=list(seeds),
                     min_effect=min_effect, profile=profile, profile_set=profile_set or {})


def test_planted_main_effect_and_interaction_are_found():
    result = analysis(synthetic_study(datasets=("mnist",)))
    by = {(e.factor, str(e.level)): e for e in result.effects}
    bn = by[("model.bn", "False")]
    # BN off costs 2 points at depth 3 and nothing at depth 2: the main effect is their mean, -1 point
    cells = {c.cell["model.conv_blocks"]: c.comparison for c in bn.cells}
    assert cells[3].difference == pytest.approx(-0.02, abs=0.003) and cells[3].significant
    assert cells[2].difference == pytest.approx(0.0, abs=0.003) and not cells[2].significant
    assert bn.main.difference == pytest.approx(-0.01, abs=0.002) and bn.main.significant
    assert bn.main.test == "paired" and bn.main.effect_size_kind == "d_z"
    depth = by[("model.conv_blocks", "2")]
    # depth 2 costs 1 point plus the lost BN bonus with BN (-3), 1 point without (-1): mean -2
    assert depth.main.difference == pytest.approx(-0.02, abs=0.002) and depth.main.significant
    [x] = [x for x in result.interactions if x.factor == "model.bn"]
    assert x.interaction.difference == pytest.approx(0.02, abs=0.003) and x.interaction.significant
    text = effects.describe_interaction(x)
    assert re.match(r"model\.bn=false \(against model\.bn=true\) changes accuracy by -(1\.9|2\.0)\d points", text)
    assert "at model.conv_blocks=3 but not at model.conv_blocks=2" in text and "Holm-adjusted" in text


def test_no_effect_planted_means_none_found():
    data = synthetic_study(datasets=("mnist",))
    for run in data.runs:  # every variant the same distribution: nothing should be significant
        # seeded by a stable digest of the name: hash() of a str changes with every process
        # (PYTHONHASHSEED), which made this draw, and so the test, differ from run to run
        noise = random.Random(zlib.crc32(run.variant.encode()) + run.seed).gauss(0, NOISE)
        run.record.result["test_acc"] = 0.9 + 0.01 * math.sin(run.seed) + noise
    result = analysis(data)
    assert result.effects and not any(e.main.significant for e in result.effects)
    assert not any(x.interaction.significant for x in result.interactions)


def test_other_datasets_get_their_own_reference_and_factors():
    result = analysis(synthetic_study())
    groups = {g.label: g for g in result.groups}
    assert set(groups) == {"data.dataset=mnist", "data.dataset=fashion-mnist"}
    fashion = groups["data.dataset=fashion-mnist"]
    assert fashion.reference == "model.bn=true, model.conv_blocks=3 Fashion"  # the baseline's twin there
    for c in result.comparisons:  # never across datasets
        assert (c.variant.endswith("Fashion")) == (c.reference.endswith("Fashion"))
        assert "data.dataset" not in c.differs_in
    assert {e.group for e in result.effects} == set(groups)
    # with groups=[] everything is one group and the dataset becomes a factor
    merged = analysis(synthetic_study(), groups=[])
    assert [g.label for g in merged.groups] == ["all variants"] and "data.dataset" in merged.groups[0].factors


def test_holm_family_covers_every_distinct_test_once():
    result = analysis(synthetic_study(datasets=("mnist",)))
    tests = {}
    for c in result.comparisons:
        tests[(c.variant, c.reference)] = c.comparison
    for e in result.effects:
        for cell in e.cells:
            tests[(cell.candidate, cell.reference)] = cell.comparison
        if len(e.cells) > 1:
            tests[("main", e.factor, str(e.level))] = e.main
    for x in result.interactions:
        tests[("interaction", x.factor, x.by)] = x.interaction
    assert result.family_size == len(tests)
    raw = list(tests.values())
    expected = stats.holm([c.p for c in raw])
    assert [c.p_adjusted for c in raw] == pytest.approx(expected)
    assert all(c.p_adjusted >= c.p for c in raw)


def test_unpaired_seeds_fall_back_to_welch():
    data = synthetic_study(datasets=("mnist",))
    # seeds 0-3 of the variant are all among the reference's 0-4: paired on those four
    data.runs = [r for r in data.runs if not (r.variant == "model.bn=false, model.conv_blocks=3" and r.seed == 4)]
    [c] = [c for c in analysis(data).comparisons if c.variant == "model.bn=false, model.conv_blocks=3"]
    assert c.comparison.test == "paired" and (c.comparison.n_candidate, c.comparison.n_baseline) == (4, 4)
    # seeds 0-3 against 1-4 share only some: Welch on all runs
    data = synthetic_study(datasets=("mnist",))
    data.runs = [r for r in data.runs if not (r.variant == "model.bn=false, model.conv_blocks=3" and r.seed == 4)
                 and not (r.variant == "model.bn=true, model.conv_blocks=3" and r.seed == 0)]
    result = analysis(data)
    [c] = [c for c in result.comparisons if c.variant == "model.bn=false, model.conv_blocks=3"]
    assert c.comparison.test == "welch" and c.comparison.effect_size_kind == "d"
    assert (c.comparison.n_candidate, c.comparison.n_baseline) == (4, 4)
    [paired] = [c for c in result.comparisons if c.variant == "model.bn=true, model.conv_blocks=2"]
    assert paired.comparison.test == "paired"


def test_power_and_min_effect_in_rows_and_report():
    data = synthetic_study(datasets=("mnist",), min_effect=0.5)
    rows = {r["variant"]: r for r in aggregate_rows(data)}
    row = rows["model.bn=true, model.conv_blocks=2"]
    c = row["vs_baseline"]
    assert c["test"] == "paired"
    expected = stats.detectable_effect(5, "paired") * c["spread"]
    assert row["power"]["detectable"] == pytest.approx(expected)
    assert row["power"]["n_needed"] == stats.n_needed(0.005, c["spread"], "paired")
    md = render_markdown(build_document_without_images(data))
    assert f"n=5 can only detect differences ≥ {expected * 100:.2f} points here" in md
    assert f"detecting 0.50 points needs n={row['power']['n_needed']} seeds (paired)" in md


def build_document_without_images(data):
    return [b for b in build_document(data, "r") if not isinstance(b, Image)]


def test_report_has_factor_effects_holm_and_no_cross_dataset_comparison():
    md = render_markdown(build_document_without_images(synthetic_study()))
    assert "\n## Factor effects\n" in md and "### Interactions (data.dataset=mnist)" in md
    assert "Holm–Bonferroni" in md and "| Holm p |" in md
    assert "## Against the baseline (model.bn=true, model.conv_blocks=3)" in md
    assert "## Against model.bn=true, model.conv_blocks=3 Fashion (data.dataset=fashion-mnist" in md
    baseline_table = md.split("## Against the baseline")[1].split("## Against model.bn")[0]
    assert "Fashion" not in baseline_table.split("Only variants")[0].split("\n", 1)[1]
    assert "| model.bn=false vs model.bn=true | **main effect** (mean over 2 cells) |" in md
    assert "paired, 5 seeds" in md and "d_z=" in md
    assert re.search(r"model\.bn=false \(against model\.bn=true\) changes accuracy by -(1\.9|2\.0)\d points", md)


def test_n_of_two_warns_instead_of_a_ci_and_quick_profile_says_so():
    data = synthetic_study(seeds=[0, 1], datasets=("mnist",), profile="quick",
                           profile_set={"train.epochs": 1, "data.train_limit": 600})
    md = render_markdown(build_document_without_images(data))
    first = md.split("\n## ")[0]
    assert "checks the pipeline, not the question" in first
    assert "— (n=2: too few runs for a CI)" in md and "too few runs to conclude" in md
    assert not re.search(r"\| [+-]\d+\.\d\d to [+-]\d+\.\d\d \|", md)  # no interval printed anywhere
    # the base config shows what the runs used: the profile's epochs, not the study's
    base_block = md.split("Base config, as the runs used it")[1].split("```")[1]
    assert "epochs: 1" in base_block and "train_limit: 600" in base_block and "epochs: 2" not in base_block


def test_power_text_beyond_the_accuracy_scale_says_so():
    from cnnlab.study.report import power_text

    assert power_text(effects.Power(0.018, 3), paired=True) == "n=3 can only detect differences ≥ 1.80 points here"
    assert power_text(effects.Power(1.18, 2, 0.005, 3280), paired=True) == (
        "n=2 cannot reliably detect any difference here (80% power would need ≥ 118 points, more than the "
        "accuracy scale); detecting 0.50 points needs n=3280 seeds (paired)")


def test_bn_and_depth_example_compares_within_datasets_and_crosses_only_what_was_run():
    from pathlib import Path

    from cnnlab.study import load_study
    from cnnlab.study.results import variant_settings

    study = load_study(Path(__file__).resolve().parents[2] / "examples" / "bn_and_depth.yaml")
    data = StudyData(name=study.name, description="", base=study.base, baseline=study.baseline, seeds=list(study.seeds),
                     groups=study.groups, min_effect=study.min_effect,
                     variants=[{"name": v.name, "slug": v.slug, "changes": v.changes} for v in study.variants])
    settings = variant_settings(data)
    rng = random.Random(1)
    for v in study.variants:  # BN helps by 2 points only at 3 conv blocks
        s = settings[v.name]
        true = 0.97 + (0.02 if s["model.bn"] and s["model.conv_blocks"] == 3 else 0.0)
        data.runs += [RunEntry(v.name, seed, "completed", RunRecord(None, {}, [], {"test_acc": true + rng.gauss(0, NOISE)}))
                      for seed in study.seeds]
    result = analysis(data)
    assert study.min_effect == 0.5 and result.min_effect == pytest.approx(0.005)
    mnist, fashion = result.groups
    assert mnist.reference == "3 conv + 3 FC / model.bn=true"
    assert fashion.reference == "3 conv + 3 FC Fashion / model.bn=true" and fashion.factors == ("model.bn",)
    assert {c.variant: c.reference for c in result.comparisons}["3 conv + 3 FC Fashion / model.bn=false"] == fashion.reference
    assert set(mnist.factors) == {"model.bn", "model.conv_blocks", "model.fc_layers"}
    [bn] = [e for e in result.effects if e.group == mnist.label and e.factor == "model.bn"]
    assert len(bn.cells) == 3  # one per depth that ran with and without BN
    checks = {(x.factor, x.by): x for x in result.interactions if x.group == mnist.label}
    # BN x conv blocks was crossed (at 3 FC layers); BN x FC layers too (at 2 conv blocks);
    # conv blocks x FC layers was not (no 3 conv + 2 FC variant), so it is not checked
    assert set(checks) == {("model.bn", "model.conv_blocks"), ("model.bn", "model.fc_layers")}
    by_depth = checks[("model.bn", "model.conv_blocks")]
    assert by_depth.stratum == {"model.fc_layers": 3} and by_depth.interaction.significant
    assert "but not at model.conv_blocks=2" in effects.describe_interaction(by_depth)
    assert not checks[("model.bn", "model.fc_layers")].interaction.significant
