"""cnnlab.scratch.optim.lr_scheduler and cnnlab.engines.optim.build_scheduler against torch.optim.lr_scheduler: lr sequences, state, the config factory."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import cnnlab.scratch.optim.lr_scheduler as ours
from cnnlab.engines.optim import build_scheduler
from cnnlab.errors import ConfigError
from cnnlab.scratch.optim import SGD, Adam
from cnnlab.scratch.parameter import Parameter

TORCH = torch.optim.lr_scheduler

# name -> builder(module, optimizer); the same call builds torch's and ours
CASES = {
    "step": lambda m, o: m.StepLR(o, step_size=7, gamma=0.3),
    "constant": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=6),
    "linear-warmup": lambda m, o: m.LinearLR(o, start_factor=0.05, total_iters=9),
    "linear-decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=30),
    # T_max shorter than the run: the cosine bounces back up, through torch's special branch
    "cosine-restart": lambda m, o: m.CosineAnnealingLR(o, T_max=11, eta_min=0.01),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=40),
    "onecycle": lambda m, o: m.OneCycleLR(o, max_lr=0.7, total_steps=40),
    "onecycle-3phase-linear": lambda m, o: m.OneCycleLR(
        o, max_lr=0.7, total_steps=40, pct_start=0.25, anneal_strategy="linear",
        three_phase=True, div_factor=10.0, final_div_factor=100.0),
    "sequential-3": lambda m, o: m.SequentialLR(
        o,
        [m.LinearLR(o, start_factor=0.1, total_iters=5),
         m.StepLR(o, step_size=4, gamma=0.5),
         m.CosineAnnealingLR(o, T_max=20, eta_min=0.001)],
        milestones=[5, 17],
    ),
    "sequential-constant-first": lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, factor=0.5, total_iters=3), m.StepLR(o, step_size=2)],
        milestones=[8],
    ),
}


def _torch_optimizer(lr=0.3):
    return torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=lr, momentum=0.9)


def _scratch_optimizer(lr=0.3):
    return SGD([Parameter(np.zeros(2))], lr=lr, momentum=0.9)


def _lrs(scheduler, optimizer, steps):
    seen = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        scheduler.step()
        seen.append(scheduler.get_last_lr()[0])
        assert optimizer.param_groups[0]["lr"] == seen[-1]
    return seen


@pytest.mark.parametrize("case", list(CASES))
def test_lr_sequence_equals_torch(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that we never call optimizer.step()
        torch_opt = _torch_optimizer()
        expected = _lrs(CASES[case](TORCH, torch_opt), torch_opt, 40)
    scratch_opt = _scratch_optimizer()
    got = _lrs(CASES[case](ours, scratch_opt), scratch_opt, 40)
    assert got == expected  # same arithmetic, so equal to the last bit
    assert len(set(got)) >= 2


@pytest.mark.parametrize("case", list(CASES))
def test_works_on_torch_optimizers(case):
    """The fit loop drives torch's optimizers with these schedulers too."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference_opt = _torch_optimizer()
        expected = _lrs(CASES[case](TORCH, reference_opt), reference_opt, 40)
    torch_opt = _torch_optimizer()
    assert _lrs(CASES[case](ours, torch_opt), torch_opt, 40) == expected


@pytest.mark.parametrize("case", ["cosine-restart", "onecycle", "sequential-3"])
def test_state_dict_round_trip_continues_the_sequence(case):
    optimizer = _scratch_optimizer()
    scheduler = CASES[case](ours, optimizer)
    full = _lrs(scheduler, optimizer, 40)

    optimizer = _scratch_optimizer()
    scheduler = CASES[case](ours, optimizer)
    first = _lrs(scheduler, optimizer, 13)
    saved = json.loads(json.dumps(scheduler.state_dict()))  # plain data only
    saved_optimizer = optimizer.state_dict()

    # resume: new optimizer and scheduler; load order must not matter
    optimizer = _scratch_optimizer()
    scheduler = CASES[case](ours, optimizer)
    scheduler.load_state_dict(saved)
    optimizer.load_state_dict(saved_optimizer)
    assert scheduler.get_last_lr() == [first[-1]]
    rest = _lrs(scheduler, optimizer, 27)
    assert first + rest[1:] == full


def test_load_state_dict_of_another_kind_is_refused():
    step = ours.StepLR(_scratch_optimizer(), step_size=3)
    cosine = ours.CosineAnnealingLR(_scratch_optimizer(), T_max=5)
    with pytest.raises(ConfigError, match=r"got keys \['T_max', 'eta_min'\]"):
        step.load_state_dict(cosine.state_dict())


def test_onecycle_refuses_stepping_past_total_steps():
    scheduler = ours.OneCycleLR(_scratch_optimizer(), max_lr=1.0, total_steps=3)
    for _ in range(3):
        scheduler.step()
    with pytest.raises(ConfigError, match="stepped 4 times but total_steps is 3"):
        scheduler.step()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda o: ours.StepLR(o, step_size=0), r"step_size to be an integer >= 1; got 0"),
        (lambda o: ours.LinearLR(o, start_factor=0.0), r"start_factor in \(0.0, 1.0\]"),
        (lambda o: ours.CosineAnnealingLR(o, T_max=2.5), r"T_max to be an integer"),
        (lambda o: ours.OneCycleLR(o, max_lr=1, total_steps=5, anneal_strategy="exp"),
         r"'cos' or 'linear'; got 'exp'"),
        (lambda o: ours.SequentialLR(o, [ours.StepLR(o, 2)], milestones=[3]),
         r"one milestone fewer"),
    ],
)
def test_bad_arguments_raise_config_error(make, message):
    with pytest.raises(ConfigError, match=message):
        make(_scratch_optimizer())


def test_needs_param_groups():
    with pytest.raises(ConfigError, match="param_groups"):
        ours.StepLR(object(), step_size=2)


def test_onecycle_without_momentum_support_needs_cycle_momentum_false():
    class Bare:
        param_groups = [{"lr": 0.1}]

    with pytest.raises(ConfigError, match="cycle_momentum=False"):
        ours.OneCycleLR(Bare(), max_lr=1.0, total_steps=4)
    assert ours.OneCycleLR(Bare(), max_lr=1.0, total_steps=4, cycle_momentum=False)


# ---- build_scheduler: epochs -> steps, stepped once per batch ---------------------------


def _schedule(cfg, steps_per_epoch=10, epochs=6, lr=0.2, optimizer=None):
    optimizer = optimizer or _scratch_optimizer(lr)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch, epochs)
    return _lrs(scheduler, optimizer, steps_per_epoch * epochs)


def test_build_constant():
    assert set(_schedule({"name": "constant", "warmup_epochs": 0})) == {0.2}
    warm = _schedule({"name": "constant"})  # the default quarter-epoch warm-up: 2 of 10 steps
    assert warm[0] == pytest.approx(0.02) and set(warm[2:]) == {0.2}


def test_build_step_decays_on_epoch_boundaries():
    lrs = _schedule({"name": "step", "step_size": 2, "gamma": 0.5})
    assert lrs[0] == lrs[19] == 0.2
    assert lrs[20] == lrs[39] == pytest.approx(0.1)
    assert lrs[40] == pytest.approx(0.05)


def test_build_cosine_with_warmup():
    lrs = _schedule({"name": "cosine", "warmup_epochs": 1, "min_lr": 0.002})
    assert lrs[0] == pytest.approx(0.02)  # warmup_start_factor defaults to 0.1
    assert np.all(np.diff(lrs[:11]) > 0) and lrs[10] == pytest.approx(0.2)
    assert np.all(np.diff(lrs[10:]) < 0) and lrs[-1] == pytest.approx(0.002)


def test_build_onecycle_peaks_at_max_lr_and_works_on_torch():
    cfg = {"name": "onecycle", "max_lr": 0.5}
    lrs = _schedule(cfg, optimizer=_torch_optimizer(0.2))
    assert max(lrs) == pytest.approx(0.5) and lrs[0] == pytest.approx(0.5 / 25)
    assert lrs.index(max(lrs)) == 17  # 30% of 60 steps
    default_peak = _schedule({"name": "onecycle"})
    assert max(default_peak) == pytest.approx(0.2)  # max_lr defaults to the optimiser's lr


def test_build_onecycle_min_lr_sets_the_final_lr():
    lrs = _schedule({"name": "onecycle", "min_lr": 1e-4})
    # the lr of the last batch (the final step() computes one that no batch uses, as in torch)
    assert lrs[-2] == pytest.approx(1e-4)


def test_build_accepts_config_objects():
    class Cfg:
        name = "step"
        step_size = 1
        gamma = 0.1
        warmup_epochs = 0

    lrs = _schedule(Cfg(), steps_per_epoch=2, epochs=3)
    assert lrs == pytest.approx([0.2, 0.2, 0.02, 0.02, 0.002, 0.002, 0.0002])


@pytest.mark.parametrize(
    "cfg, message",
    [
        ({"name": "cosin"}, r"'cosin'; valid names are constant, step, cosine, onecycle.*'cosine'"),
        ({"name": "step", "step_size": 0}, r"step_size > 0"),
        ({"name": "cosine", "warmup_epochs": 6}, r"warmup_epochs=6 must be >= 0 and shorter"),
        ({"name": "onecycle", "warmup_epochs": 1}, r"warms up by itself"),
        ({"name": "step", "step_size": 2, "gamma": "half"},
         r"schedule.gamma to be a number; got 'half'"),
    ],
)
def test_build_errors(cfg, message):
    with pytest.raises(ConfigError, match=message):
        build_scheduler(_scratch_optimizer(), cfg, steps_per_epoch=10, epochs=6)


def test_build_rejects_empty_loader():
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        build_scheduler(Adam([Parameter(np.zeros(1))]), {"name": "cosine"}, 0, 3)


@pytest.mark.parametrize("case", ["onecycle-per-group", "sequential-3"])
def test_every_param_group_follows_torch(case):
    """Groups with their own lrs (and OneCycle's per-group max_lr) are scheduled separately."""
    build = {
        "onecycle-per-group": lambda m, o: m.OneCycleLR(o, max_lr=[0.7, 0.2], total_steps=30),
        "sequential-3": CASES["sequential-3"],
    }[case]

    def run(module, optimizer):
        scheduler = build(module, optimizer)
        seen = []
        for _ in range(30):
            scheduler.step()
            seen.append([g["lr"] for g in optimizer.param_groups])
            assert scheduler.get_last_lr() == seen[-1]
        return seen

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = run(TORCH, torch.optim.SGD(
            [{"params": [torch.zeros(1)]}, {"params": [torch.zeros(1)], "lr": 0.05}], lr=0.3))
    got = run(ours, SGD([{"params": [Parameter(np.zeros(1))]},
                         {"params": [Parameter(np.zeros(1))], "lr": 0.05}], lr=0.3))
    assert got == expected
    assert got[5][0] != got[5][1]
