import pytest

from cnnlab.errors import ConfigError
from cnnlab.study import expand, load_study, parse_study

BASE = {"data": {"dataset": "digits"}, "model": {"name": "mlp"}, "train": {"epochs": 1, "seed": 10}}


def test_grid_is_a_cartesian_product_times_seeds():
    study = parse_study({"base": BASE, "grid": {"optim.lr": [0.1, 0.01], "optim.name": ["sgd", "adam", "adamw"]},
                         "seeds": 2})
    assert [v.name for v in study.variants][:3] == ["optim.lr=0.1, optim=sgd", "optim.lr=0.1, optim=adam", "optim.lr=0.1, optim=adamw"]
    specs = expand(study)
    assert len(specs) == 2 * 3 * 2
    assert {(s.config["optim"]["lr"], s.config["optim"]["name"]) for s in specs} == {
        (lr, name) for lr in (0.1, 0.01) for name in ("sgd", "adam", "adamw")}
    # seeds count from base train.seed; every run has its own folder
    assert sorted({s.seed for s in specs}) == [10, 11]
    assert len({s.relpath for s in specs}) == len(specs)
    assert specs[0].relpath == "runs/optim.lr=0.1-optim=sgd/seed10"
    assert study.baseline == "optim.lr=0.1, optim=sgd"


def test_variants_combine_with_grid_and_explicit_seeds():
    study = parse_study({
        "base": BASE, "grid": {"optim.lr": [0.1, 0.01]}, "seeds": [3, 7], "baseline": "BN / optim.lr=0.1",
        "variants": [{"name": "BN", "set": {}}, {"name": "no BN", "set": {"model.name": "lenet"}}],
    })
    assert [v.name for v in study.variants] == ["BN / optim.lr=0.1", "no BN / optim.lr=0.1", "BN / optim.lr=0.01", "no BN / optim.lr=0.01"]
    specs = expand(study)
    assert len(specs) == 8 and {s.seed for s in specs} == {3, 7}
    no_bn = [s for s in specs if s.variant == "no BN / optim.lr=0.01"]
    assert {s.config["model"]["name"] for s in no_bn} == {"lenet"} and no_bn[0].config["optim"]["lr"] == 0.01


def test_profile_narrows_grid_sets_keys_and_seeds():
    data = {"base": BASE, "grid": {"optim.lr": [0.1, 0.01, 0.001]}, "seeds": 3,
            "profiles": {"quick": {"set": {"data.train_limit": 200}, "seeds": 1, "grid": {"optim.lr": [0.1]},
                                   "description": "one small run"}}}
    full = parse_study(data)
    quick = parse_study(data, profile="quick")
    assert quick.profile_description == "one small run" and quick.profile_set == {"data.train_limit": 200}
    assert len(expand(full)) == 9
    specs = expand(quick, data_dir="/somewhere")
    assert len(specs) == 1
    assert specs[0].config["data"]["train_limit"] == 200 and specs[0].config["data"]["data_dir"] == "/somewhere"


def test_profile_set_wins_over_variants():
    study = parse_study({"base": BASE, "variants": [{"name": "long", "set": {"train.epochs": 30}}],
                         "profiles": {"quick": {"set": {"train.epochs": 1}}}}, profile="quick")
    assert expand(study)[0].config["train"]["epochs"] == 1


@pytest.mark.parametrize("data,fragment", [
    ({"base": BASE, "seed": 3}, "unknown key 'seed'; valid keys are"),
    ({"base": BASE, "seeds": 0}, "at least 1"),
    ({"base": BASE, "grid": {"optim.lr": 0.1}}, "must be a non-empty list"),
    ({"grid": {"optim.lr": [0.1]}}, "no 'base:'"),
    ({"base": BASE, "baseline": "nope"}, "no variant 'nope'"),
    ({"base": BASE, "variants": [{"name": "a", "sett": {}}]}, "Did you mean 'set'?"),
    ({"base": BASE, "variants": [{"name": "A b"}, {"name": "a-b"}]}, "share the folder name"),
])
def test_bad_study_files_fail_with_clear_messages(data, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        parse_study(data)
    assert fragment in str(err.value)


def test_unknown_profile_and_seed_key_suggest():
    data = {"base": BASE, "profiles": {"quick": {"seeds": 1}}}
    with pytest.raises(ConfigError, match="Did you mean 'quick'"):
        parse_study(data, profile="quik")
    with pytest.raises(ConfigError, match="Did you mean 'seeds'"):
        parse_study({**data, "profiles": {"quick": {"seed": 1}}}, profile="quick")


def test_every_run_config_is_validated_before_running():
    study = parse_study({"base": BASE, "variants": [{"name": "ok", "set": {}},
                                                    {"name": "typo", "set": {"optim.lrr": 0.1}}]})
    with pytest.raises(ConfigError) as err:
        expand(study)
    assert "variant 'typo'" in str(err.value) and "optim.lrr" in str(err.value)


def test_match_params_scales_widths_to_the_target():
    from cnnlab.models import resolve

    study = parse_study({"base": {**BASE, "data": {"dataset": "fashion-mnist"}}, "match_params": "mlp",
                         "grid": {"model.name": ["lenet", "lenet_nopool"]}, "seeds": 1})
    specs = expand(study)
    target = resolve("mlp", (1, 28, 28)).total_params()
    for spec in specs:
        assert spec.matched["target_params"] == target
        params = resolve(spec.config["model"]["spec"], (1, 28, 28)).total_params()
        assert abs(params - target) <= 0.05 * target


def test_load_study_reads_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: {data: {dataset: digits}}\ngrid: {optim.lr: [0.1, 0.2]}\n")
    study = load_study(path)
    assert study.name == "s" and len(study.variants) == 2
    (tmp_path / "bad.yaml").write_text("base: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(tmp_path / "bad.yaml")


def test_grid_names_use_full_keys_and_baseline_accepts_other_spellings():
    data = {"base": BASE, "grid": {"model.name": ["mlp", "lenet"], "optim.lr": [0.05, 0.1], "model.bn": [True]}}
    study = parse_study(data)
    assert [v.name for v in study.variants][:2] == ["model=mlp, optim.lr=0.05, model.bn=true",
                                                     "model=mlp, optim.lr=0.1, model.bn=true"]
    # what the report prints, the short key, another float spelling, YAML's True: all one variant
    for given in ("model=lenet, optim.lr=0.05, model.bn=true", "model=lenet, lr=0.05, bn=true",
                  "model.name=lenet, optim.lr=5e-2, model.bn=True"):
        assert parse_study({**data, "baseline": given}).baseline == "model=lenet, optim.lr=0.05, model.bn=true"
    with pytest.raises(ConfigError, match="no variant 'model=vgg'"):
        parse_study({**data, "baseline": "model=vgg"})


def test_groups_and_report_min_effect_keys():
    study = parse_study({"base": BASE, "groups": ["data.dataset", "model.name"], "report": {"min_effect": 0.5}})
    assert study.groups == ("data.dataset", "model.name") and study.min_effect == 0.5
    assert parse_study({"base": BASE}).groups == ("data.dataset",) and parse_study({"base": BASE}).min_effect is None
    with pytest.raises(ConfigError, match="min_effect' must be a positive number"):
        parse_study({"base": BASE, "report": {"min_effect": -1}})
    with pytest.raises(ConfigError, match="Did you mean 'min_effect'"):
        parse_study({"base": BASE, "report": {"min_efect": 0.5}})
