"""The zoo's parameter counts (issue #2's table), shape inference and spec errors."""

import pytest
import torch

from cnnlab import models
from cnnlab.errors import ModelError

EXPECTED_PARAMS = {
    "mlp": 105_622,
    "lenet": 60_578,
    "lenet_nopool": 941_858,
    "deep_cnn": 59_734,
    "small_cnn": 207_274,
    "simple_cnn": 114_186,
    "vgg8": 294_810,
    "vgg8_bn": 295_770,
    "resnet18": 11_181_642,
    "resnet18_cifar": 11_173_962,
    # 2x2x3x24 + 24 stem; blocks 64, 256, 256 (two bias-free 3x3 convs + 2 BN each); 256x10 head
    "fast_cnn": 1_972_792,
}


def test_zoo_lists_every_documented_model():
    assert set(models.names()) == set(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts_match_the_table(name):
    net = models.build(name)
    assert models.count_params(net) == EXPECTED_PARAMS[name]
    assert models.resolve(name).total_params() == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED_PARAMS) if not n.startswith("resnet")])
def test_forward_shapes_match_inferred_shapes(name):
    root = models.resolve(name, num_classes=7)
    net = models.build(name, num_classes=7).eval()
    out = net(torch.zeros(2, *models.get(name).input_shape))
    assert tuple(out.shape) == (2,) + root.out_shape == (2, 7)


def test_vgg8_bn_running_statistics_are_buffers():
    assert models.resolve("vgg8_bn").total_buffers() == 960


def test_resnet18_uses_torchvision_parameter_names():
    keys = list(models.build("resnet18").state_dict())
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer2.0.downsample.0.weight" in keys and "layer1.0.downsample.0.weight" not in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]


def test_resnet18_conv_linear_macs():
    assert models.resolve("resnet18").conv_linear_macs() == 37_016_576


@pytest.mark.parametrize("name,options", [("fast_cnn", {"width": 0.5}), ("simple_cnn", {}),
                                          ("vgg8_bn", {}), ("lenet", {})])
def test_conv_linear_macs_are_half_of_torchs_counted_forward_flops(name, options):
    # the CIFAR benchmark's FLOP/s figure rests on this count
    from torch.utils.flop_counter import FlopCounterMode

    node = models.resolve(name, **options)
    net = models.build(name, **options).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(3, *node.in_shape))
    assert 2 * node.conv_linear_macs() == counter.get_total_flops() / 3


def test_models_adapt_to_other_inputs_and_class_counts():
    net = models.build("lenet", input_shape=(3, 32, 32), num_classes=100).eval()
    assert tuple(net(torch.zeros(1, 3, 32, 32)).shape) == (1, 100)


def test_deep_cnn_says_it_needs_16x16():
    with pytest.raises(ModelError, match=r"needs at least 16x16 input but was given 1x14x14"):
        models.resolve("deep_cnn", (1, 14, 14))
    models.resolve("deep_cnn", (1, 16, 16))


@pytest.mark.parametrize("options, params", [
    ({"bn": False}, 59_734 - 12 - 24 - 48 - 256 - 96),
    ({"conv_blocks": 2, "fc_layers": 2}, None),
])
def test_deep_cnn_options(options, params):
    root = models.resolve("deep_cnn", **options)
    if params is not None:
        assert root.total_params() == params
    kinds = [n.kind for n in root.leaves()]
    assert kinds.count("Conv2d") == options.get("conv_blocks", 3)
    assert kinds.count("Linear") == options.get("fc_layers", 3)


def test_unknown_option_and_model_suggest_the_closest():
    with pytest.raises(ModelError, match="Did you mean 'bn'"):
        models.resolve("deep_cnn", bnn=False)
    with pytest.raises(ModelError, match="Did you mean 'lenet'"):
        models.resolve("lenett")


def test_spec_shape_inference_and_names():
    spec = [{"conv": {"out": 8, "k": 3, "pad": 1}, "name": "conv1"}, "bn", "relu", {"maxpool": 2},
            "flatten", {"linear": "classes", "name": "head"}]
    root = models.resolve(spec, (3, 10, 10), num_classes=4)
    assert [c.out_shape for c in root.children] == [(8, 10, 10), (8, 10, 10), (8, 10, 10), (8, 5, 5), (200,), (4,)]
    assert set(models.build(spec, (3, 10, 10), 4).state_dict()) >= {"conv1.weight", "1.running_mean", "head.bias"}


@pytest.mark.parametrize("spec, message", [
    (["flatten", {"conv": {"out": 4}}], r"Conv2d at layer '1' needs an image input"),
    ([{"linear": 10}], r"Linear at layer '0' needs a flat input .* add 'flatten'"),
    ([{"conv": {"out": 4, "kk": 3}}], r"Unknown argument 'kk' for 'conv'.*Did you mean 'k'"),
    ([{"convv": {"out": 4}}], r"Unknown layer 'convv'.*Did you mean 'conv'"),
    ([{"conv": {"out": 4, "k": 9}}], r"needs a spatial size of at least 9x9 but receives 5x5"),
    ([{"relu": None, "name": "a"}, {"relu": None, "name": "a"}], r"'a' is used twice"),
])
def test_spec_errors_name_the_layer(spec, message):
    with pytest.raises(ModelError, match=message):
        models.resolve(spec, (1, 5, 5))


def test_spec_file(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("input_shape: [1, 12, 12]\nlayers:\n  - {conv: {out: 4, k: 3}}\n  - relu\n  - flatten\n  - {linear: classes}\n")
    root = models.resolve(path, num_classes=3)
    assert root.in_shape == (1, 12, 12) and root.out_shape == (3,)
    assert root.total_params() == 4 * 9 + 4 + 4 * 10 * 10 * 3 + 3


def test_match_params_within_five_percent():
    target = EXPECTED_PARAMS["mlp"]
    for name in ("lenet", "lenet_nopool"):
        matched = models.match_params(name, "mlp")
        assert abs(matched["params"] - target) <= 0.05 * target
        root = models.resolve(matched["spec"], tuple(matched["input_shape"]))
        assert root.total_params() == matched["params"]
        assert root.out_shape == (10,)  # the classifier is not scaled
