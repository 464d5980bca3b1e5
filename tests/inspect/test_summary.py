"""Summary statistics: golden tables, cross-checks with torch's flop counter and torchinfo,
engine parity, and instrumentation that leaves no trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from cnnlab import models
from cnnlab.errors import ModelError
from cnnlab.inspect import summary
from cnnlab.inspect.stats import collect

GOLDEN = Path(__file__).parent / "golden"
ZOO = models.names()


@pytest.fixture(scope="module")
def torch_summaries():
    return {name: summary(name) for name in ZOO}


@pytest.mark.parametrize("name", ZOO)
def test_table_matches_golden(name, torch_summaries, update_golden):
    text = str(torch_summaries[name])
    path = GOLDEN / f"summary_{name}.txt"
    if update_golden:
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}; run pytest --update-golden"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ZOO)
def test_conv_linear_macs_equal_torch_flop_counter(name, torch_summaries):
    from torch.utils.flop_counter import FlopCounterMode

    stats = torch_summaries[name]
    net = models.build(name).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, *stats.input_shape))
    assert stats.conv_linear_macs == counter.get_total_flops() // 2
    assert stats.flops == 2 * stats.macs


@pytest.mark.parametrize("name", ZOO)
def test_param_totals_and_memory_equal_torchinfo(name, torch_summaries):
    torchinfo = pytest.importorskip("torchinfo")
    stats = torch_summaries[name]
    info = torchinfo.summary(models.build(name), (1, *stats.input_shape), verbose=0)
    assert stats.total_params == info.total_params
    assert stats.trainable_params == info.trainable_params
    assert stats.param_bytes == info.total_param_bytes
    assert stats.forward_backward_bytes == info.total_output_bytes
    assert stats.input_bytes == 4 * int(np.prod(stats.input_shape))  # torchinfo adds object overhead


@pytest.mark.parametrize("name", ZOO)
def test_engines_give_identical_numbers(name, torch_summaries):
    ours, theirs = torch_summaries[name], summary(name, engine="scratch")
    assert theirs.engine == "scratch"
    for field in ("total_params", "trainable_params", "running_stat_values", "counter_values",
                  "macs_by_kind", "input_bytes", "forward_backward_bytes", "param_bytes"):
        assert getattr(theirs, field) == getattr(ours, field), field

    # rows that hold parameters or cost MACs are the same layers with the same numbers; the
    # torch BasicBlock keeps a parameterless `relu` child that the scratch one does not
    def costly(s):
        return [(l.name, l.kind, l.out_shape, l.params, l.macs) for l in s.layers if l.params or l.macs]

    assert costly(theirs) == costly(ours)


def test_resnet18_numbers_from_the_issue(torch_summaries):
    stats = torch_summaries["resnet18"]
    assert stats.input_shape == (3, 32, 32)
    assert stats.total_params == 11_181_642
    assert stats.conv_linear_macs == 37_016_576


def test_vgg8_bn_separates_running_statistics(torch_summaries):
    stats = torch_summaries["vgg8_bn"]
    assert (stats.trainable_params, stats.non_trainable_params) == (295_770, 0)
    assert stats.running_stat_values == 960
    assert stats.counter_values == 8  # one num_batches_tracked per BN, reported apart
    text = " ".join(str(stats).split())  # the footer wraps long lines
    assert "960 BN running-statistic values" in text and "8 num_batches_tracked" in text


def test_frozen_and_shared_parameters_are_counted_once_and_honestly():
    shared = nn.Linear(8, 8)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), shared, nn.ReLU(), shared, nn.Linear(8, 3))
    for p in net[1].parameters():
        p.requires_grad_(False)
    stats = collect(net, (3, 2, 2))
    assert stats.total_params == 12 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3
    assert stats.non_trainable_params == 12 * 8 + 8
    shared_row = next(l for l in stats.layers if l.name == "2")
    assert shared_row.calls == 2 and shared_row.macs == 2 * 64  # both calls are costed
    assert stats.macs_by_kind == {"Linear": 12 * 8 + 2 * 64 + 8 * 3}


class _Broken(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(10, 2))  # wrong in_features

    def forward(self, x):
        return self.head(self.features(x))


def _hooks(module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def test_failing_forward_names_the_layer_removes_hooks_and_restores_modes():
    net = _Broken().train()
    net.features[1].eval()  # a mixed mode must come back exactly
    modes = {name: m.training for name, m in net.named_modules()}
    running_mean = net.features[1].running_mean.clone()
    with pytest.raises(ModelError) as err:
        summary(net, (3, 8, 8))
    message = str(err.value)
    assert "'head.1' (Linear)" in message and "(144)" in message and "(3, 8, 8)" in message
    assert _hooks(net) == 0
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert torch.equal(net.features[1].running_mean, running_mean)


def test_scratch_failing_forward_removes_hooks_and_restores_mode():
    net = models.build([{"conv": 4}, "flatten", {"linear": 3}], (1, 6, 6), engine="scratch")
    net.train()
    with pytest.raises(ModelError, match="forward pass broke"):
        summary(net, (1, 5, 5))
    assert all(not m._forward_hooks for _, m in net.named_modules())
    assert all(m.training for _, m in net.named_modules())


def test_summary_leaves_bn_statistics_and_train_mode_untouched():
    net = models.build("small_cnn").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    summary(net, (1, 28, 28))
    assert net.training and _hooks(net) == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_depth_folds_blocks_into_their_ancestors(torch_summaries):
    stats = torch_summaries["resnet18"]
    shallow = stats.visible_layers(1)
    assert [l.name for l in shallow][:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    layer1 = next(l for l in shallow if l.name == "layer1")
    assert layer1.params == 2 * 73_984
    assert sum(l.params for l in shallow) == stats.total_params
    assert sum(l.macs for l in shallow) == stats.macs
    table = summary("resnet18", depth=1)
    assert "conv2 (Conv2d)" not in str(table) and "147,968" in str(table)


def test_to_dict_is_plain_data_and_html_renders(torch_summaries):
    stats = torch_summaries["vgg8_bn"]
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["flops"] == 2 * data["macs"] == 2 * stats.macs
    assert data["layers"][0]["name"] == "conv1" and data["layers"][0]["out_shape"] == [16, 32, 32]
    html = stats._repr_html_()
    assert html.count("<tr>") == len(stats.visible_layers()) + 1 + 11 and "295,770" in html


def test_accepts_spec_list_yaml_file_and_module(tmp_path):
    spec = [{"conv": {"out": 4, "k": 3, "pad": 1}}, "relu", "flatten", {"linear": "classes"}]
    from_list = summary(spec, (1, 6, 6), num_classes=3)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"layers": spec, "input_shape": [1, 6, 6]}))
    from_file = summary(path, num_classes=3)
    from_module = summary(models.build(spec, (1, 6, 6), 3), "1x6x6")
    for s in (from_list, from_file, from_module):
        assert s.total_params == 4 * 9 + 4 + 144 * 3 + 3
        assert s.macs_by_kind == {"Conv2d": 144 * 9, "Linear": 144 * 3}
    assert from_file.model_name == "tiny"


@pytest.mark.parametrize("bad, shape, message", [
    ("resnet_18", None, "Did you mean 'resnet18'"),
    ("lenet", "1x4x4", "needs at least"),
    ("mlp", "3xbig", "not C x H x W"),
    ("mlp", "0x28x28", "positive sizes"),
])
def test_bad_input_raises_model_error(bad, shape, message):
    with pytest.raises(ModelError, match=message):
        summary(bad, shape)


def test_a_module_needs_an_input_shape():
    with pytest.raises(ModelError, match="input_shape"):
        summary(nn.Linear(2, 2))


def test_dummy_input_follows_model_dtype():
    net = models.build("mlp", engine="scratch").double()
    stats = summary(net, (1, 28, 28))
    assert stats.param_bytes == 8 * stats.total_params
    assert np.isclose(stats.input_bytes, 8 * 28 * 28)


def test_zoo_options_reach_the_model():
    with_bn, without_bn = summary("deep_cnn"), summary("deep_cnn", bn=False)
    assert with_bn.running_stat_values > 0 and without_bn.running_stat_values == 0
    assert "BatchNorm2d" not in without_bn.macs_by_kind
    assert with_bn.conv_linear_macs == without_bn.conv_linear_macs
