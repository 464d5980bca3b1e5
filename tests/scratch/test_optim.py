"""Scratch optimisers against torch.optim: trajectories, state round trips, bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cnnlab.scratch.optim.lr_scheduler as cnn_sched
from cnnlab.engines.optim import OptimConfig, build_optimizer
from cnnlab.engines.scratch_engine import SCRATCH_OPTIMIZERS
from cnnlab.errors import ConfigError, ModelError
from cnnlab.scratch import optim
from cnnlab.scratch.parameter import Parameter

STEPS = 20

OPTIMIZERS = {
    "sgd-nesterov-wd": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    "sgd-dampening": ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-3)),
    "adam-l2": ("Adam", dict(lr=0.02, betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-2)),
    "adamw": ("AdamW", dict(lr=0.02, betas=(0.85, 0.995), eps=1e-6, weight_decay=0.1)),
    "adam-beta1-over-half": ("Adam", dict(lr=0.01, betas=(0.3, 0.9))),
}


SCHEDULES = ["none", "step", "cosine", "onecycle", "warmup-cosine"]


def _make_scheduler(module, opt, name):
    # build only the requested one: constructing a scheduler changes the optimizer's lr
    return {
        "none": lambda: None,
        "step": lambda: module.StepLR(opt, step_size=4, gamma=0.5),
        "cosine": lambda: module.CosineAnnealingLR(opt, T_max=STEPS, eta_min=1e-3),
        "onecycle": lambda: module.OneCycleLR(opt, max_lr=0.08, total_steps=STEPS),
        "warmup-cosine": lambda: module.SequentialLR(
            opt,
            [module.LinearLR(opt, start_factor=0.1, total_iters=5),
             module.CosineAnnealingLR(opt, T_max=STEPS - 5, eta_min=1e-4)],
            milestones=[5],
        ),
    }[name]()


def _problem(seed=0):
    """A small non-convex regression: weights (4, 3) and bias (3,), float64."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(16, 4)))
    y = torch.from_numpy(rng.normal(size=(16, 3)))
    weights = [rng.normal(size=(4, 3)), rng.normal(size=(3,))]

    def gradients(values):
        """Loss gradients at `values` (numpy arrays), computed by torch autograd."""
        w, b = (torch.tensor(v, requires_grad=True) for v in values)
        loss = ((torch.tanh(x @ w + b) * 2 - y) ** 2).mean() + 0.1 * (w**4).sum()
        loss.backward()
        return [w.grad.numpy(), b.grad.numpy()]

    return weights, gradients


def _run_scratch(opt_name, kwargs, sched_name, steps=STEPS):
    weights, gradients = _problem()
    params = [Parameter(w.copy()) for w in weights]
    opt = getattr(optim, opt_name)(params, **kwargs)
    sched = _make_scheduler(cnn_sched, opt, sched_name)
    lrs = []
    for _ in range(steps):
        for p, g in zip(params, gradients([p.data for p in params])):
            p.grad = g
        opt.step()
        if sched is not None:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return [p.data for p in params], lrs


def _run_torch(opt_name, kwargs, sched_name, steps=STEPS):
    weights, gradients = _problem()
    params = [torch.tensor(w.copy(), requires_grad=True) for w in weights]
    opt = getattr(torch.optim, opt_name)(params, **kwargs)
    sched = _make_scheduler(torch.optim.lr_scheduler, opt, sched_name)
    lrs = []
    for _ in range(steps):
        for p, g in zip(params, gradients([p.detach().numpy() for p in params])):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
        if sched is not None:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return [p.detach().numpy() for p in params], lrs


@pytest.mark.parametrize("sched_name", SCHEDULES)
@pytest.mark.parametrize("opt_key", list(OPTIMIZERS))
def test_trajectory_matches_torch(opt_key, sched_name):
    opt_name, kwargs = OPTIMIZERS[opt_key]
    ours, our_lrs = _run_scratch(opt_name, kwargs, sched_name)
    theirs, their_lrs = _run_torch(opt_name, kwargs, sched_name)
    assert our_lrs == pytest.approx(their_lrs, rel=1e-12, abs=0)
    start, _ = _problem()
    for mine, ref, initial in zip(ours, theirs, start):
        assert not np.allclose(ref, initial)  # the problem really moved the weights
        np.testing.assert_allclose(mine, ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-12)  # in fact to rounding


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_onecycle_cycles_momentum_like_torch():
    """OneCycleLR moves SGD's momentum and Adam's beta1 as torch does."""
    for opt_name, key in (("SGD", "momentum"), ("Adam", "betas")):
        weights, _ = _problem()
        ours = getattr(optim, opt_name)([Parameter(w.copy()) for w in weights], lr=0.1)
        theirs = getattr(torch.optim, opt_name)([torch.tensor(w) for w in weights], lr=0.1)
        a = cnn_sched.OneCycleLR(ours, max_lr=0.5, total_steps=10)
        b = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=0.5, total_steps=10)
        for _ in range(10):
            assert ours.param_groups[0][key] == pytest.approx(theirs.param_groups[0][key])
            a.step()
            b.step()


def _gradients_at(params, gradients):
    for p, g in zip(params, gradients([p.data for p in params])):
        p.grad = g


@pytest.mark.parametrize("opt_key", ["sgd-nesterov-wd", "adamw"])
def test_state_dict_round_trip_resumes_exactly(opt_key):
    opt_name, kwargs = OPTIMIZERS[opt_key]
    weights, gradients = _problem()
    params = [Parameter(w.copy()) for w in weights]
    opt = getattr(optim, opt_name)(params, **kwargs)
    for _ in range(3):
        _gradients_at(params, gradients)
        opt.step()
    saved_weights = [p.data.copy() for p in params]
    saved = opt.state_dict()
    for _ in range(3):
        _gradients_at(params, gradients)
        opt.step()
    # state_dict holds copies: the three steps above did not change it
    assert saved["state"][0] != {} and all(
        not np.shares_memory(v, p.data) for v in saved["state"][0].values()
        if isinstance(v, np.ndarray) for p in params
    )

    # what a checkpoint gives back: string keys, lists for tuples, 0-d arrays for numbers
    restored = {
        "state": {str(k): {n: np.asarray(v) for n, v in entry.items()}
                  for k, entry in saved["state"].items()},
        "param_groups": json.loads(json.dumps(saved["param_groups"])),
    }
    fresh = [Parameter(w.copy()) for w in saved_weights]
    other = getattr(optim, opt_name)(fresh, lr=123.0)
    other.load_state_dict(restored)
    assert other.param_groups[0]["lr"] == kwargs["lr"]
    for _ in range(3):
        _gradients_at(fresh, gradients)
        other.step()
    for a, b in zip(params, fresh):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_refuses_mismatched_shapes():
    params = [Parameter(np.zeros((2, 2)))]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    params[0].grad = np.ones((2, 2))
    opt.step()
    state = opt.state_dict()
    other = optim.SGD([Parameter(np.zeros((3,)))], lr=0.1, momentum=0.9)
    with pytest.raises(ModelError, match=r"shape \(2, 2\).*\(3,\)"):
        other.load_state_dict(state)
    with pytest.raises(ModelError, match="sizes"):
        optim.SGD([Parameter(np.zeros(1)), Parameter(np.zeros(1))], lr=0.1).load_state_dict(state)


def test_skips_frozen_and_gradless_params_and_zero_grad():
    frozen = Parameter(np.ones(3), requires_grad=False)
    frozen.grad = np.ones(3)
    gradless = Parameter(np.ones(3))
    live = Parameter(np.ones(3, dtype=np.float32))
    live.grad = np.full(3, 2.0, dtype=np.float32)
    opt = optim.Adam([frozen, gradless, live], lr=0.1)
    opt.step()
    np.testing.assert_array_equal(frozen.data, 1.0)
    np.testing.assert_array_equal(gradless.data, 1.0)
    assert live.data.dtype == np.float32
    np.testing.assert_allclose(live.data, 0.9, rtol=1e-6)  # Adam's first step is lr * sign
    opt.zero_grad()
    assert live.grad is None and frozen.grad is None
    live.grad = np.ones(3, dtype=np.float32)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(live.grad, 0.0)


def test_updates_in_place():
    p = Parameter(np.ones((5, 5), dtype=np.float32))
    before = p.data
    opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    for _ in range(2):
        p.grad = np.ones((5, 5), dtype=np.float32)
        opt.step()
    assert p.data is before and p.data.dtype == np.float32


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ps: optim.SGD(ps, lr=-0.1), r"lr=-0.1 is out of range"),
        (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), r"nesterov=True needs momentum > 0"),
        (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), r"betas\[1\]=1.0 is out of range"),
        (lambda ps: optim.Adam(ps, betas=(0.9,)), r"two numbers"),
        (lambda ps: optim.AdamW(ps, eps="tiny"), r"eps must be a number; got 'tiny'"),
    ],
)
def test_bad_settings_raise_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make([Parameter(np.zeros(2))])


def test_bad_params_raise_model_error():
    with pytest.raises(ModelError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ModelError, match="got ndarray"):
        optim.SGD([np.zeros(2)], lr=0.1)
    p = Parameter(np.zeros(2))
    with pytest.raises(ModelError, match="twice"):
        optim.SGD([p, p], lr=0.1)
    p.grad = np.zeros(3)
    with pytest.raises(ModelError, match=r"gradient of shape \(3,\)"):
        optim.SGD([p], lr=0.1).step()


def test_param_groups_take_their_own_settings():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad = b.grad = np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.0)


def test_build_optimizer_from_config():
    p = [Parameter(np.zeros(2))]
    sgd = build_optimizer(p, {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, SCRATCH_OPTIMIZERS)
    assert isinstance(sgd, optim.SGD) and sgd.param_groups[0]["nesterov"] is True
    adamw = build_optimizer(p, {"name": "AdamW", "lr": 0.01, "betas": [0.8, 0.9]}, SCRATCH_OPTIMIZERS)
    assert isinstance(adamw, optim.AdamW)
    assert adamw.param_groups[0]["betas"] == (0.8, 0.9)
    # what the dict leaves out takes the config's one set of defaults
    assert adamw.param_groups[0]["weight_decay"] == OptimConfig().weight_decay
    with pytest.raises(ConfigError, match=r"'adma'.*adam, adamw, sgd.*Did you mean 'adam'"):
        build_optimizer(p, {"name": "adma", "lr": 0.1}, SCRATCH_OPTIMIZERS)


def test_schedulers_live_beside_the_optimisers_as_in_torch():
    assert optim.lr_scheduler.StepLR is cnn_sched.StepLR  # torch.optim.lr_scheduler.StepLR


def test_the_default_schedule_warms_up_for_a_quarter_epoch_except_onecycle():
    from cnnlab.engines.optim import DEFAULT_WARMUP_EPOCHS, build_scheduler

    def lrs(schedule, steps=8, epochs=2):
        opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
        scheduler = build_scheduler(opt, schedule, steps, epochs)
        seen = []
        for _ in range(steps * epochs):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler.step()
        return seen

    assert DEFAULT_WARMUP_EPOCHS == 0.25
    warm = lrs({"name": "constant"})  # 8 steps per epoch: 2 warmup steps from 0.01
    np.testing.assert_allclose(warm[:3], [0.01, 0.055, 0.1])
    assert set(warm[2:]) == {0.1}
    assert set(lrs({"name": "constant", "warmup_epochs": 0})) == {0.1}
    np.testing.assert_allclose(lrs({"name": "constant", "warmup_epochs": 0.5})[:5],
                               [0.01, 0.0325, 0.055, 0.0775, 0.1])
    onecycle = lrs({"name": "onecycle"})
    assert onecycle[0] == pytest.approx(0.1 / 25)  # its own warm-up only
    # one step per epoch: the default warm-up rounds to none rather than eating the run
    assert lrs({"name": "cosine"}, steps=1, epochs=1) == [0.1]
