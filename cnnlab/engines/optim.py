"""Optimisers and learning-rate schedules built from the typed config: one place, one set of defaults.

`OptimConfig` and `ScheduleConfig` are the `optim` and `schedule` sections of a training config
(`cnnlab.config.Config` composes them). Their field defaults are the only defaults: a dict or
any object handed to the builders gets the same values for what it leaves out.

- `build_optimizer(params, optim_cfg, classes)`: the optimiser `optim_cfg.name` names, from the
  engine's own classes (`torch.optim.SGD` ... or `cnnlab.scratch.optim.SGD` ...), so both
  engines read one config the same way.
- `build_scheduler(optimizer, schedule_cfg, steps_per_epoch, epochs)`: the schedule, from
  `cnnlab.scratch.optim.lr_scheduler` (torch's semantics, for either engine's optimiser),
  stepped once per batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from cnnlab.engines.ema import Lookahead
from cnnlab.errors import ConfigError
from cnnlab.scratch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    OneCycleLR,
    SequentialLR,
    StepLR,
    as_number,
    as_positive_int,
    param_groups_of,
)
from cnnlab.utils import did_you_mean

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
ONECYCLE_DIV_FACTOR = 25.0  # torch's default: onecycle starts at max_lr / 25
DEFAULT_WARMUP_EPOCHS = 0.25  # schedule.warmup_epochs: null, for the schedules below
# onecycle warms up by itself; step keeps its decays on epoch boundaries (a warm-up before it
# would shift every decay)
WARMED_UP_BY_DEFAULT = ("constant", "cosine")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser.

    name: sgd, adam or adamw.
    lr: peak learning rate (the schedule scales it per batch).
    momentum, nesterov: SGD momentum and Nesterov's variant (nesterov needs momentum > 0).
    weight_decay: L2 penalty for sgd/adam, decoupled decay for adamw.
    betas, eps: Adam/AdamW moment coefficients and denominator epsilon.
    bias_lr_scale: learning-rate multiplier for every bias (conv, linear and normalisation
        biases), which the schedule scales like the rest. Fast recipes (airbench) train biases
        with a much larger rate than weights: after BN a bias shift is not rescaled away.
    bias_weight_decay: weight decay for the biases (null: `weight_decay`). Setting either of
        these two splits the parameters into two groups (weights first, then biases).
    lookahead_steps, lookahead_alpha: Lookahead around the optimiser (0: off): every
        `lookahead_steps` steps the slow weights move `lookahead_alpha` of the way to the
        fast ones, which restart from them (`cnnlab.engines.ema.Lookahead`).
    """

    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    bias_lr_scale: float = 1.0
    bias_weight_decay: Optional[float] = None
    lookahead_steps: int = 0
    lookahead_alpha: float = 0.5


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule, stepped once per batch.

    name: constant, step (multiply by `gamma` every `step_size` epochs), cosine (anneal to
        `min_lr` over the run) or onecycle (warm up to `max_lr`, default `optim.lr`, over the
        first `pct_start` of the run, then anneal; the final lr is `min_lr` when > 0).
    warmup_epochs: linear warmup from `warmup_start_factor * lr` over this many epochs (a
        fraction is fine) before the schedule; 0: none. null, the default, is a quarter of an
        epoch (`DEFAULT_WARMUP_EPOCHS`) for constant and cosine: without it, SGD at the default
        rate blows the loss up in the first batches on CIFAR-10 (simple_cnn: 2.5 -> 16 per
        sample by batch 5). None for onecycle, which warms up by itself, and for step, whose
        decays stay on epoch boundaries (set warmup_epochs explicitly there).
    cycle_momentum: onecycle also cycles momentum (or Adam's beta1) inversely to the lr.
    """

    name: str = "constant"
    step_size: int = 10
    gamma: float = 0.5
    warmup_epochs: Optional[float] = None
    warmup_start_factor: float = 0.1
    min_lr: float = 0.0
    max_lr: Optional[float] = None
    pct_start: float = 0.3
    cycle_momentum: bool = False


def as_section(cfg: Any, section: type):
    """`cfg` (a section dataclass, a dict, or any object with its attributes) as `section`.

    Keys or attributes it leaves out (or sets to None) take the section's defaults; unknown dict
    keys are refused. Values are not type-checked here: `cnnlab.config` does that for configs,
    and the builders check the numbers they use.
    """
    if isinstance(cfg, section):
        return cfg
    names = [f.name for f in dataclasses.fields(section)]
    if isinstance(cfg, Mapping):
        unknown = [k for k in cfg if k not in names]
        if unknown:
            raise ConfigError(
                f"Unknown {section.__name__} key(s) {', '.join(map(repr, unknown))}; valid keys: "
                f"{', '.join(names)}.{did_you_mean(str(unknown[0]), names)}"
            )
        values = dict(cfg)
    else:
        values = {name: getattr(cfg, name) for name in names if hasattr(cfg, name)}
    return section(**{k: v for k, v in values.items() if v is not None})


def is_bias(name: str) -> bool:
    """A parameter name (torch's dotted path) that names a bias."""
    return name.rsplit(".", 1)[-1] == "bias"


def parameter_groups(params: Iterable, names: Iterable[str], cfg: "OptimConfig") -> list:
    """`params` as one group, or weights then biases when the config treats biases apart."""
    params = list(params)
    if cfg.bias_lr_scale == 1.0 and cfg.bias_weight_decay is None:
        return params
    names = list(names)
    if len(names) != len(params):
        raise ConfigError(
            f"optim.bias_lr_scale / optim.bias_weight_decay need a name for every parameter; "
            f"got {len(names)} names for {len(params)} parameters."
        )
    weights = [p for n, p in zip(names, params) if not is_bias(n)]
    biases = [p for n, p in zip(names, params) if is_bias(n)]
    decay = cfg.weight_decay if cfg.bias_weight_decay is None else cfg.bias_weight_decay
    groups = [{"params": weights}] if weights else []
    if biases:
        groups.append({"params": biases, "lr": cfg.lr * cfg.bias_lr_scale, "weight_decay": decay})
    return groups


def build_lookahead(live: dict, optim_cfg: Any):
    """The `Lookahead` a config asks for over `live` (parameter name -> storage), or None."""
    cfg = as_section(optim_cfg, OptimConfig)
    return Lookahead(live, cfg.lookahead_steps, cfg.lookahead_alpha) if cfg.lookahead_steps else None


def build_optimizer(params: Iterable, optim_cfg: Any, classes: Mapping[str, type],
                    names: Iterable[str] = ()):
    """The optimiser `optim_cfg.name` names over `params`, taken from `classes`.

    classes: an engine's optimiser classes by name (`sgd`, `adam`, `adamw`), each taking
    torch's constructor arguments.
    names: the parameters' names, in the same order (needed when biases get their own group,
    see `OptimConfig.bias_lr_scale`).
    """
    cfg = as_section(optim_cfg, OptimConfig)
    name = str(cfg.name).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(
            f"Unknown optimiser optim.name={name!r}; valid names are "
            f"{', '.join(sorted(OPTIMIZERS))}.{did_you_mean(name, OPTIMIZERS)}"
        )
    if name == "sgd":
        kwargs = dict(momentum=cfg.momentum, nesterov=bool(cfg.nesterov))
    else:
        kwargs = dict(betas=tuple(cfg.betas), eps=cfg.eps)
    groups = parameter_groups(params, names, cfg)
    return classes[name](groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **kwargs)


def build_scheduler(optimizer: Any, schedule_cfg: Any, steps_per_epoch: int, epochs: int):
    """The schedule a config names, to be stepped once per BATCH (after `optimizer.step()`).

    Epoch counts (`step_size`, `warmup_epochs`) are converted to steps with `steps_per_epoch`,
    so decays land on epoch boundaries; a warm-up is followed by the main schedule (a cosine
    then spans the remaining steps). See `ScheduleConfig` for the settings.
    """
    cfg = as_section(schedule_cfg, ScheduleConfig)
    name = str(cfg.name).lower()
    if name not in SCHEDULES:
        raise ConfigError(
            f"Unknown schedule schedule.name={name!r}; valid names are "
            f"{', '.join(SCHEDULES)}.{did_you_mean(name, SCHEDULES)}"
        )
    steps_per_epoch = as_positive_int("build_scheduler", "steps_per_epoch", steps_per_epoch)
    epochs = as_positive_int("build_scheduler", "epochs", epochs)

    def number(key: str) -> float | None:
        value = getattr(cfg, key)
        return None if value is None else as_number("The schedule", f"schedule.{key}", value)

    total_steps = steps_per_epoch * epochs
    warmup_epochs = number("warmup_epochs")
    if warmup_epochs is None:  # the default: a short warmup, kept shorter than the run
        warmup_epochs = DEFAULT_WARMUP_EPOCHS if name in WARMED_UP_BY_DEFAULT else 0.0
        warmup_steps = min(int(round(warmup_epochs * steps_per_epoch)), total_steps - 1)
    else:
        warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if warmup_epochs < 0 or (warmup_steps >= total_steps and name != "constant"):
        raise ConfigError(
            f"schedule.warmup_epochs={warmup_epochs:g} must be >= 0 and shorter than the "
            f"{epochs} training epoch(s), so the '{name}' schedule has steps left."
        )
    min_lr = number("min_lr")

    if name == "onecycle":
        if warmup_steps:
            raise ConfigError(
                f"schedule.warmup_epochs={warmup_epochs:g} with the onecycle schedule: onecycle "
                "warms up by itself (pct_start); set warmup_epochs to 0."
            )
        max_lr = number("max_lr")
        groups = param_groups_of(optimizer)
        lrs = [float(g["lr"]) for g in groups]
        # an explicit max_lr is the first group's (the weights'); later groups keep their ratio
        max_lrs = [max_lr * lr / lrs[0] for lr in lrs] if max_lr is not None else lrs
        final_div = max_lrs[0] / ONECYCLE_DIV_FACTOR / min_lr if min_lr > 0 else 1e4
        return OneCycleLR(optimizer, max_lrs, total_steps=total_steps,
                          pct_start=number("pct_start"), cycle_momentum=bool(cfg.cycle_momentum),
                          div_factor=ONECYCLE_DIV_FACTOR, final_div_factor=final_div)

    if name == "constant":
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name == "step":
        step_size = number("step_size")
        if step_size <= 0:
            raise ConfigError(
                f"The step schedule needs schedule.step_size > 0 (epochs between decays); "
                f"got {step_size!r}."
            )
        main = StepLR(optimizer, step_size=max(1, int(round(step_size * steps_per_epoch))),
                      gamma=number("gamma"))
    else:
        main = CosineAnnealingLR(optimizer, T_max=total_steps - warmup_steps, eta_min=min_lr)
    if warmup_steps == 0:
        return main
    warmup = LinearLR(optimizer, start_factor=number("warmup_start_factor"), end_factor=1.0,
                      total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])
