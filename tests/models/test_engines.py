"""One spec, two engines: same parameter names and shapes, same predictions on shared weights."""

import numpy as np
import pytest
import torch

from cnnlab import models
from cnnlab.errors import ModelError
from cnnlab.engines.scratch_engine import build_model as build_scratch
from cnnlab.models.spec import Node

CHEAP = ["mlp", "lenet", "lenet_nopool", "deep_cnn", "small_cnn", "simple_cnn", "vgg8", "vgg8_bn", "resnet18"]


def _randomise_bn_statistics(net: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics, so eval-mode BN is really exercised."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)


@pytest.mark.parametrize("name", CHEAP)
def test_scratch_model_loads_torch_state_dict_and_predicts_the_same(name):
    generator = torch.Generator().manual_seed(0)
    torch_net = models.build(name)
    _randomise_bn_statistics(torch_net, generator)
    torch_net.eval()
    scratch_net = models.build(name, engine="scratch")
    torch_state = torch_net.state_dict()
    assert {k: tuple(v.shape) for k, v in scratch_net.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in torch_state.items()}
    scratch_net.load_state_dict(torch_state)
    scratch_net.eval()

    x = torch.randn(3, *models.get(name).input_shape, generator=generator)
    with torch.no_grad():
        expected = torch_net(x).numpy()
    got = scratch_net(x.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_scratch_state_dict_loads_into_torch():
    scratch_net = models.build("small_cnn", engine="scratch")
    torch_net = models.build("small_cnn")
    torch_net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in scratch_net.state_dict().items()})
    torch_net.eval()
    scratch_net.eval()
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(scratch_net(x), torch_net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-4)


def test_engine_without_an_op_is_refused_up_front_naming_it():
    root = Node("", "Sequential", {}, (1, 8, 8), (1, 8, 8), [Node("up", "PixelShuffle", {}, (1, 8, 8), (1, 8, 8))])
    with pytest.raises(ModelError, match=r"cannot build layer 'up' \(PixelShuffle\)"):
        build_scratch(root)


def test_unknown_engine():
    with pytest.raises(ModelError, match="Unknown engine 'jax'"):
        models.build("mlp", engine="jax")
