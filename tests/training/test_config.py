"""Config: defaults, YAML round trip, overrides, and errors that name the key and a suggestion."""

from __future__ import annotations

import dataclasses

import pytest

from cnnlab.config import Config, load_config, parse_overrides
from cnnlab.errors import ConfigError


def test_defaults_round_trip_through_dict_and_yaml(tmp_path):
    config = load_config({"model": {"name": "deep_cnn", "bn": False}, "data": {"augment": ["crop"]}})
    assert Config.from_dict(config.to_dict()) == config
    path = config.save(tmp_path / "config.yaml")
    again = load_config(path)
    assert again == config
    assert again.model.options["bn"] is False
    assert "bn: false" in path.read_text()
    assert again.data.augment == ("crop",)


def test_config_is_frozen_and_replace_returns_a_copy():
    config = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.lr = 1.0
    changed = config.replace(**{"optim.lr": 0.1, "train.epochs": 4})
    assert (changed.optim.lr, changed.train.epochs) == (0.1, 4)
    assert config.optim.lr == 0.05


def test_set_strings_are_parsed_as_yaml_and_coerced():
    config = load_config(None, ["optim.lr=1", "optim.eps=1e-7", "data.augment=crop,flip",
                                "data.train_limit=500", "train.patience=null",
                                "optim.betas=[0.8, 0.99]", "data.normalize=false"])
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.optim.eps == 1e-7  # YAML 1.1 reads 1e-7 as a string
    assert config.data.augment == ("crop", "flip")
    assert config.data.train_limit == 500
    assert config.train.patience is None
    assert config.optim.betas == (0.8, 0.99)
    assert config.data.normalize is False


def test_unknown_key_names_key_valid_keys_and_closest_match():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["optim.lrr=0.1"])
    message = str(err.value)
    assert "'optim.lrr'" in message and "momentum" in message and "Did you mean 'lr'?" in message


def test_unknown_section_and_model_option_suggest_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'train'"):
        load_config({"trian": {"epochs": 1}})
    with pytest.raises(ConfigError, match="Did you mean 'bn'"):
        load_config({"model": {"name": "deep_cnn", "bnn": False}})
    with pytest.raises(ConfigError, match="Did you mean 'small_cnn'"):
        load_config({"model": {"name": "smal_cnn"}})


@pytest.mark.parametrize("override, fragment", [
    ("train.epochs=2.5", "must be an integer"),
    ("train.epochs=0", "integer >= 1"),
    ("data.normalize=1", "true or false"),
    ("optim.lr=fast", "must be a number"),
    ("optim.name=sgdd", "Did you mean 'sgd'"),
    ("data.augment=[crop, flp]", "Did you mean 'flip'"),
    ("model.dropout=high", "must be a number"),
    ("optim.betas=[0.9]", "list of 2 values"),
])
def test_wrong_types_and_values_are_config_errors(override, fragment):
    base = {"model": {"name": "deep_cnn"}}
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        load_config(base, [override])


@pytest.mark.parametrize("bad", ["optim.lr", "lr=0.1", "optim.lr.x=1", "optim.lr=[1"])
def test_malformed_overrides_are_config_errors(bad):
    with pytest.raises(ConfigError):
        load_config(None, [bad])


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="nesterov"):
        load_config({"optim": {"name": "adam", "nesterov": True}})
    with pytest.raises(ConfigError, match="no validation set"):
        load_config({"data": {"val_fraction": 0}})
    assert load_config({"data": {"val_fraction": 0}, "train": {"monitor": "train_loss"}})


def test_missing_file_and_non_mapping_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_parse_overrides_keeps_empty_values_as_null():
    assert parse_overrides(["data.data_dir=", "train.name=exp1"]) == {
        "data.data_dir": None, "train.name": "exp1"}


@pytest.mark.parametrize("recipe", ["mnist_fast.yaml", "fashion_fast.yaml"])
def test_shipped_recipes_are_valid_configs(recipe):
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / recipe)
    assert config.schedule.name == "onecycle" and config.train.threads == 2


def test_the_fast_cifar_recipe_and_its_gpu_profile_are_valid_configs():
    from pathlib import Path

    from cnnlab.errors import ConfigError

    path = Path(__file__).resolve().parents[2] / "examples" / "cifar10_fast.yaml"
    cpu = load_config(path)
    assert (cpu.model.name, cpu.model.whiten, cpu.eval.tta) == ("fast_cnn", True, ("flip", "translate"))
    assert "flip_alternate" in cpu.data.augment and cpu.train.device == "auto"
    gpu = load_config(path, profile="gpu")
    assert gpu.train.device == "cuda" and gpu.model.options["width"] == 1.0
    assert gpu.train.batch_size > cpu.train.batch_size
    assert "profiles" not in gpu.to_dict()  # the saved config is the resolved one
    with pytest.raises(ConfigError, match="Unknown profile 'gpuu'.*profiles gpu.*Did you mean 'gpu'"):
        load_config(path, profile="gpuu")
