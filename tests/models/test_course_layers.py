"""The spec words of the ops courses add (issue 10 item 2): resolved, valued, built by both
engines with the same parameters, and the same logits for the same weights in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab import cli, models
from cnnlab.errors import ModelError
from cnnlab.inspect.diagram import key_args
from cnnlab.inspect.stats import collect

SPEC = [
    {"conv": {"out": 8, "k": 3, "pad": 1}, "name": "conv1"},
    {"groupnorm": {"groups": 4}, "name": "gn"},
    "gelu",
    {"dropout2d": 0.1, "name": "drop"},
    {"upsample": {"scale": 2, "mode": "bilinear"}, "name": "up"},
    {"conv": {"out": 6, "k": 3}, "name": "conv2"},
    {"layernorm": {"dims": 2}, "name": "ln"},
    {"gelu": "tanh"},
    "silu",
    {"upsample": {"size": [7, 5]}, "name": "up2"},
    {"adaptive_maxpool": 3, "name": "pool"},
    "flatten",
    {"layernorm": {}, "name": "ln_fc"},
    {"linear": "classes", "name": "fc"},
    {"logsoftmax": 1, "name": "log_probs"},
]
INPUT = (2, 7, 9)


def test_new_words_resolve_to_torch_kinds_shapes_and_costs():
    root = models.resolve(SPEC, INPUT, num_classes=5)
    nodes = {path: node for path, node in root.walk() if path}
    assert nodes["gn"].args == dict(num_groups=4, num_channels=8, eps=1e-5, affine=True)
    assert nodes["up"].args == dict(mode="bilinear", scale_factor=2.0, align_corners=False)
    assert nodes["up"].out_shape == (8, 14, 18)
    assert nodes["ln"].args["normalized_shape"] == (12, 16)  # the last two dims of (6, 12, 16)
    assert nodes["ln_fc"].args["normalized_shape"] == (54,)  # all dims by default
    assert nodes["up2"].out_shape == (6, 7, 5) and nodes["pool"].out_shape == (6, 3, 3)
    assert [nodes[k].kind for k in ("2", "drop", "7", "8", "log_probs")] == \
        ["GELU", "Dropout2d", "GELU", "SiLU", "LogSoftmax"]
    # parameters as torch counts them; the norms cost one MAC per element, bilinear four
    assert nodes["gn"].params() == 16 and nodes["ln"].params() == 2 * 12 * 16
    assert nodes["gn"].macs() == 8 * 7 * 9 and nodes["up"].macs() == 4 * 8 * 14 * 18
    assert nodes["up2"].macs() == 0
    net = models.build(SPEC, INPUT, num_classes=5)
    assert root.total_params() == sum(p.numel() for p in net.parameters())


def test_same_weights_give_the_same_logits_and_gradients_in_both_engines():
    theirs = models.build(SPEC, INPUT, num_classes=5).double().eval()
    ours = models.build(SPEC, INPUT, num_classes=5, engine="scratch").to(np.float64)
    ours.eval()
    with torch.no_grad():  # affine parameters away from their ones/zeros start
        for p in theirs.parameters():
            p.add_(torch.rand_like(p) - 0.5)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3,) + INPUT)
    tx = torch.tensor(x, requires_grad=True)
    t_out = theirs(tx)
    out = ours(x)
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-7, atol=1e-12)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    t_out.backward(torch.tensor(dout))
    np.testing.assert_allclose(ours.backward(dout), tx.grad.numpy(), rtol=1e-7, atol=1e-12)
    t_params = dict(theirs.named_parameters())
    for name, _, grad in ours.named_parameters():
        np.testing.assert_allclose(grad, t_params[name].grad.numpy(), rtol=1e-7, atol=1e-12)


def test_summary_and_diagram_read_the_new_layers_in_both_engines():
    for engine in ("torch", "scratch"):
        summary = collect(models.build(SPEC, INPUT, engine=engine), INPUT)
        assert {"GroupNorm", "LayerNorm", "Upsample"} <= set(summary.macs_by_kind)
        assert summary.macs == models.resolve(SPEC, INPUT).total_macs()
        layers = {layer.name: layer for layer in summary.layers}
        assert key_args(layers["gn"]) == "4 groups"
        assert key_args(layers["up"]) == "x2.0, bilinear"
        assert key_args(layers["up2"]) == "to 7x5, nearest"


@pytest.mark.parametrize("layer, message", [
    ({"groupnorm": 3, "name": "gn"}, r"GroupNorm at layer 'gn': groups=3 must divide the 4 channel"),
    ({"groupnorm": 0, "name": "gn"}, r"GroupNorm at layer 'gn': 'groups' must be an integer >= 1"),
    ({"groupnorm": {}, "name": "gn"}, r"'groupnorm' at .* needs groups"),
    ({"layernorm": {"eps": 0}}, r"LayerNorm at layer '1': 'eps' must be a number > 0"),
    ({"layernorm": 4}, r"LayerNorm at layer '1': 'dims' is 4 but its input has 3 dim"),
    ({"layernorm": {"affine": "yes"}}, r"LayerNorm at layer '1': 'affine' must be true or false"),
    ({"dropout2d": 1.5, "name": "d"}, r"Dropout2d at layer 'd': 'p' must be a number in \[0, 1\)"),
    ({"gelu": "fast"}, r"GELU at layer '1': 'approximate' must be 'none' .* or 'tanh'"),
    ({"softmax": 4}, r"Softmax at layer '1': 'dim' must be in \[-4, 3\]"),
    ({"logsoftmax": "x"}, r"LogSoftmax at layer '1': 'dim' must be an integer"),
    ({"adaptive_maxpool": 0}, r"AdaptiveMaxPool2d at layer '1': 'size' must be an integer >= 1"),
    ({"upsample": {}}, r"Upsample at layer '1': 'scale' must be given alone: set exactly one"),
    ({"upsample": {"scale": 2, "size": 8}}, r"Upsample at layer '1': 'scale' must be given alone"),
    ({"upsample": -2}, r"Upsample at layer '1': 'scale' must be a number > 0"),
    ({"upsample": {"scale": 2, "mode": "bicubic"}}, r"'mode' must be 'nearest' or 'bilinear'"),
    ({"upsample": {"scale": 2, "align_corners": True}}, r"'align_corners' must be .*only with mode bilinear"),
    ({"upsample": 0.01}, r"Upsample at layer '1': scale 0.01 gives an empty output"),
])
def test_bad_values_name_the_layer(layer, message):
    with pytest.raises(ModelError, match=message):
        models.resolve([{"conv": {"out": 4, "k": 1}}, layer], (1, 8, 8))


def test_image_only_words_refuse_vectors_and_the_cli_exits_2(tmp_path, capsys):
    with pytest.raises(ModelError, match="Dropout2d at layer '1' needs an image input"):
        models.resolve(["flatten", "dropout2d"], (1, 4, 4))
    spec = tmp_path / "bad.yaml"
    spec.write_text("input_shape: [1, 8, 8]\nlayers:\n  - {groupnorm: 3, name: gn}\n")
    assert cli.main(["summary", str(spec)]) == 2
    assert "GroupNorm at layer 'gn'" in capsys.readouterr().err


def test_the_spec_trains_a_step_in_both_engines():
    from cnnlab.engines.scratch_engine import ScratchEngine
    from cnnlab.engines.torch_engine import TorchEngine

    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4,) + INPUT).astype(np.float32), rng.integers(0, 5, 4)
    for engine_class, engine in ((TorchEngine, "torch"), (ScratchEngine, "scratch")):
        model = models.build(SPEC, INPUT, num_classes=5, engine=engine)
        adapter = engine_class(model, {"name": "sgd", "lr": 0.1})
        adapter.train()
        state = model.state_dict
        as_array = (lambda v: v.detach().numpy().copy()) if engine == "torch" else np.copy
        before = {k: as_array(v) for k, v in state().items()}
        loss_sum, correct = adapter.train_batch(torch.from_numpy(x), torch.from_numpy(y))
        assert np.isfinite(float(loss_sum)) and 0 <= int(correct) <= 4
        after = {k: as_array(v) for k, v in state().items()}
        assert not np.allclose(before["gn.weight"], after["gn.weight"])
        assert not np.allclose(before["ln.weight"], after["ln.weight"])
