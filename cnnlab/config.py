"""Training configuration: frozen dataclasses per concern, loaded from YAML or dicts.

A config has five sections, each a frozen dataclass: `data`, `model`, `optim`, `schedule`,
`train`. In YAML every section is a flat mapping; the model's zoo options sit beside its name:

    data: {dataset: mnist, data_dir: ../data, augment: [crop]}
    model: {name: deep_cnn, bn: false}
    optim: {name: sgd, lr: 0.05}
    schedule: {name: cosine}
    train: {epochs: 5, batch_size: 128}

Overrides are `"section.key=value"` strings (the CLI's `--set`) or a dict `{"optim.lr": 0.1}`.
String values are parsed as YAML scalars, then checked and coerced against the field's type
(an int is accepted where a float is expected). Unknown keys and wrong types raise
`ConfigError` naming the key, the valid keys and the closest match.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from cnnlab import engines, models
from cnnlab.data.augment import AUGMENTATIONS, TTA_VIEWS
from cnnlab.engines.optim import OPTIMIZERS, SCHEDULES, OptimConfig, ScheduleConfig
from cnnlab.errors import ConfigError
from cnnlab.utils import atomic_write_text, did_you_mean

# The names a config may use come from the registries that implement them: engines
# (`cnnlab.engines`), optimisers and schedules (`cnnlab.engines.optim`, which also defines the
# `optim` and `schedule` sections), augmentations (`cnnlab.data.augment`), zoo models.
MONITORS = ("val_acc", "val_loss", "train_acc", "train_loss")
LOGGERS = ("tensorboard", "mlflow")  # implemented in cnnlab.training.loggers (above this layer)
SPEC_LABEL = "spec"  # the model label of an inline model.spec given without model.name


class FrozenMapping(Mapping):
    """A read-only dict (model options) that keeps the config hashable and immutable."""

    def __init__(self, items=()):
        self._data = dict(items)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def __hash__(self):
        return hash(tuple(sorted(self._data.items(), key=lambda kv: kv[0])))

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self._data) == dict(other)

    def __repr__(self):
        return f"FrozenMapping({self._data!r})"


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split and prepared.

    dataset: registry name (`digits`, `mnist`, `fashion-mnist`, `cifar10`, `folder:PATH`).
    data_dir: directory holding the dataset files; None means `$CNNLAB_DATA`, then
        `~/.cache/cnnlab`.
    train_limit: keep a stratified, seeded subset of this many training images (None: all).
    test_limit: evaluate on a stratified, seeded subset of this many test images (None: all);
        for quick pipeline checks, not for results to report.
    val_fraction: share of the training set held out (stratified) for validation, in [0, 1).
    augment: batched augmentations applied to training batches, in order: any of crop, flip,
        rotate, translate, cutout, flip_alternate (see `cnnlab.data.augment`).
    translate: the largest shift of `translate`, in pixels (reflection padding).
    cutout: the side of `cutout`'s black square, in pixels.
    normalize: subtract the training split's per-channel mean and divide by its std.
    download: fetch missing files from the canonical mirrors (with checksum verification).
    """

    dataset: str = "digits"
    data_dir: Optional[str] = None
    train_limit: Optional[int] = None
    test_limit: Optional[int] = None
    val_fraction: float = 0.1
    augment: tuple[str, ...] = ()
    translate: int = 2
    cutout: int = 12
    normalize: bool = True
    download: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """Which network to train.

    name: a zoo name (`cnnlab models` lists them), or a label for an inline `spec` (a spec
        given without a name is labelled `spec`, never the default zoo name).
    spec: optional inline layer list in the spec language (see `cnnlab.models.spec`); when
        given it is built instead of the zoo entry.
    whiten: initialise the first conv from the training set's patch statistics (patch
        whitening, as airbench does); works for any model whose first layer is a Conv2d.
    options: the zoo entry's options (e.g. `bn`, `dropout` for `deep_cnn`), written flat beside
        `name` in YAML; options not given keep the zoo's defaults.
    layers: a Python file with the student's own layer classes, used in place of cnnlab's by
        the scratch engine (docs/student_layers.md); stored absolute.
    """

    name: str = "small_cnn"
    spec: Optional[list] = None
    whiten: bool = False
    layers: Optional[str] = None
    options: FrozenMapping = field(default_factory=FrozenMapping)

    @property
    def ref(self):
        """What `cnnlab.models` builds: the inline spec when there is one, else the zoo name."""
        return self.spec if self.spec is not None else self.name

    def resolved_options(self) -> dict:
        """The zoo entry's option defaults overlaid with the config's (none for a spec)."""
        if self.spec is not None:
            return {}
        return {**dict(models.get(self.name).options), **dict(self.options)}


@dataclass(frozen=True)
class TrainConfig:
    """How the fit loop runs and where the run folder goes.

    epochs, batch_size, seed: the usual; the seed fixes initialisation, split and batch order.
    engine: torch or scratch (the NumPy engine).
    device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.
    label_smoothing: cross-entropy label smoothing in [0, 1).
    monitor: metric that picks the best checkpoint and drives early stopping.
    patience: stop after this many epochs without improvement (None: never stop early).
    amp: bf16 autocast: `auto` (the default: on CUDA; float32 on CPU), true (on CUDA and on
        the CPU too: pays on CPUs with AMX or AVX512-BF16, 2.8x for fast_cnn on the 2-core Xeon
        the README measures; much slower on CPUs without them) or false (float32 everywhere).
    channels_last: NHWC memory format for conv nets (faster on CPU and GPU).
    threads: torch CPU threads (None: torch's default).
    name: run name, one folder under `out` (no `/`, `.` or `..`; None: `<model>-<dataset>`).
    out: directory that holds run folders.
    ema: decay of an exponential moving average of the weights and BN statistics, updated
        every batch and used for evaluation and the best checkpoint (None or 0: off).
    compile: torch.compile the model (torch engine; pays for long runs and on GPUs, see the
        README).
    loggers: experiment trackers fed as callbacks, any of tensorboard, mlflow (see
        `cnnlab.training.loggers`); a tracker that fails warns once and never stops training.
    tensorboard_dir: TensorBoard log directory (None: `<run folder>/tensorboard`, so
        `tensorboard --logdir runs` or `--logdir studies/<name>` compares the runs).
    mlflow_uri: MLflow tracking URI (None: `$MLFLOW_TRACKING_URI`, else a file store
        `<out>/mlruns` beside the runs).
    """

    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    engine: str = "torch"
    device: str = "auto"
    label_smoothing: float = 0.0
    monitor: str = "val_acc"
    patience: Optional[int] = None
    amp: Union[bool, str] = "auto"
    channels_last: bool = True
    threads: Optional[int] = None
    name: Optional[str] = None
    out: str = "runs"
    ema: Optional[float] = None
    compile: bool = False
    loggers: tuple[str, ...] = ()
    tensorboard_dir: Optional[str] = None
    mlflow_uri: Optional[str] = None


@dataclass(frozen=True)
class EvalConfig:
    """How validation and test batches are evaluated.

    tta: test-time augmentation, the logits averaged over views: `[]` (off), `[flip]` (the image
        and its mirror) or `[flip, translate]` (each also shifted by one pixel both ways).
    """

    tta: tuple[str, ...] = ()


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


@dataclass(frozen=True)
class Config:
    """A complete, validated training configuration (see the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "Config":
        """Build and validate a config from a nested mapping like the YAML form."""
        d = {} if d is None else d
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"A config must be a mapping of sections ({', '.join(SECTIONS)}), "
                f"got {type(d).__name__}: {d!r:.200}."
            )
        sections = {}
        for section, values in d.items():
            if section not in SECTIONS:
                raise ConfigError(
                    f"Unknown config section '{section}'. Valid sections: "
                    f"{', '.join(SECTIONS)}.{did_you_mean(str(section), SECTIONS)}"
                )
            if values is None:
                values = {}
            if not isinstance(values, Mapping):
                raise ConfigError(
                    f"Config section '{section}' must be a mapping of keys to values, "
                    f"got {type(values).__name__}: {values!r:.200}."
                )
            sections[section] = _build_section(section, values)
        config = cls(**sections)
        _check_values(config)
        return config

    def to_dict(self) -> dict:
        """A plain nested dict (lists, not tuples) that YAML and JSON can write."""
        out = {}
        for section in SECTIONS:
            obj = getattr(self, section)
            values = {}
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if f.name == "options":
                    values.update(_plain(value))
                elif f.name in ("spec", "layers") and value is None:
                    continue
                else:
                    values[f.name] = _plain(value)
            out[section] = values
        return out

    def replace(self, **overrides) -> "Config":
        """A copy with dotted keys replaced: `config.replace(**{"optim.lr": 0.1})`."""
        return load_config(self, overrides)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def from_yaml(cls, text: str) -> "Config":
        return cls.from_dict(_parse_yaml(text, "the YAML text"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as YAML, atomically."""
        return atomic_write_text(path, self.to_yaml())


def load_config(path_or_dict=None, overrides=None, profile: str | None = None) -> Config:
    """A Config from a YAML path, a dict or a Config (None: defaults), with overrides applied.

    `overrides` is a list of `"a.b=value"` strings or a dict `{"a.b": value}`. A config file may
    hold named `profiles:` (`{gpu: {description: ..., set: {train.device: cuda, ...}}}`);
    `profile` applies one's `set` before the overrides. The saved config is the resolved one.
    """
    if path_or_dict is None:
        base: dict = {}
    elif isinstance(path_or_dict, Config):
        base = path_or_dict.to_dict()
    elif isinstance(path_or_dict, Mapping):
        base = copy.deepcopy(dict(path_or_dict))
    elif isinstance(path_or_dict, (str, os.PathLike)):
        base = _read_yaml_file(Path(path_or_dict))
    else:
        raise ConfigError(
            "load_config expects a YAML path, a dict or a Config, "
            f"got {type(path_or_dict).__name__}: {path_or_dict!r:.200}."
        )
    if base is None:
        base = {}
    if not isinstance(base, Mapping):
        raise ConfigError(f"A config must be a mapping of sections, got {base!r:.200}.")
    base = dict(base)
    profiles = base.pop("profiles", None) or {}
    if profile is not None:
        for key, value in _profile_settings(profiles, profile).items():
            _set_dotted(base, key, value)
    for key, value in _override_items(overrides):
        _set_dotted(base, key, value)
    return Config.from_dict(base)


def _profile_settings(profiles, name: str) -> dict:
    """The dotted settings of profile `name`, or a ConfigError naming the profiles there are."""
    if not isinstance(profiles, Mapping) or name not in profiles:
        names = list(profiles) if isinstance(profiles, Mapping) else []
        raise ConfigError(
            f"Unknown profile {name!r}; this config has "
            f"{'the profiles ' + ', '.join(names) if names else 'no profiles'}."
            f"{did_you_mean(name, names)}"
        )
    entry = profiles[name] or {}
    settings = entry.get("set", {}) if isinstance(entry, Mapping) else None
    if not isinstance(settings, Mapping):
        raise ConfigError(f"Profile {name!r} must be a mapping with 'set: {{section.key: value}}'.")
    return dict(settings)


def parse_overrides(items) -> dict:
    """`["optim.lr=0.1", "data.augment=[crop, flip]"]` -> `{"optim.lr": 0.1, ...}` (YAML scalars)."""
    parsed = {}
    for item in items or ():
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(
                f"An override must look like 'section.key=value' (e.g. 'optim.lr=0.1'), got {item!r}."
            )
        key, _, text = item.partition("=")
        key = key.strip()
        parsed[key] = _parse_yaml(text, f"the value of '{key}'") if text.strip() else None
    return parsed


# --- internals -------------------------------------------------------------------------------


def _override_items(overrides):
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    if isinstance(overrides, (list, tuple)):
        return list(parse_overrides(overrides).items())
    raise ConfigError(
        f"Overrides must be a list of 'a.b=value' strings or a dict, got {overrides!r:.200}."
    )


def _set_dotted(base: dict, key: str, value) -> None:
    section, dot, name = str(key).partition(".")
    if not dot or not name or "." in name:
        raise ConfigError(
            f"Override key '{key}' must be 'section.key' with section one of "
            f"{', '.join(SECTIONS)} (e.g. 'optim.lr')."
        )
    if section not in SECTIONS:
        raise ConfigError(
            f"Unknown config section '{section}' in override '{key}'. Valid sections: "
            f"{', '.join(SECTIONS)}.{did_you_mean(section, SECTIONS)}"
        )
    current = base.get(section)
    base[section] = dict(current) if isinstance(current, Mapping) else {}
    base[section][name] = value


def _parse_yaml(text: str, what: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"Could not parse {what} as YAML: {err}".replace("\n", " ")) from None


def _read_yaml_file(path: Path):
    if not path.is_file():
        raise ConfigError(f"Config file '{path}' does not exist (or is not a file).")
    return _parse_yaml(path.read_text(encoding="utf-8"), f"config file '{path}'")


def _plain(value):
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build_section(section: str, values: Mapping):
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in values.items():
        key = str(key)
        if section == "model" and key == "options":
            raise ConfigError(
                "Model options are written flat beside the name, e.g. "
                "'model: {name: deep_cnn, bn: false}', not under 'model.options'."
            )
        if key in hints and key != "options":
            kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
        elif section == "model":
            extra[key] = value
        else:
            valid = [f.name for f in dataclasses.fields(cls)]
            raise ConfigError(
                f"Unknown config key '{section}.{key}' (value {value!r:.100}). Valid keys in "
                f"'{section}': {', '.join(valid)}.{did_you_mean(key, valid)}"
            )
    if section == "model":
        if "spec" in kwargs and kwargs["spec"] is not None:
            kwargs["spec"] = copy.deepcopy(kwargs["spec"])
            kwargs.setdefault("name", SPEC_LABEL)
        kwargs["options"] = FrozenMapping(
            _check_model_options(kwargs.get("name", ModelConfig.name), kwargs.get("spec"), extra)
        )
    return cls(**kwargs)


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value, hint, key: str):
    """Check `value` against a dataclass field type, converting where it is lossless."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        # the first member the value fits, in declared order (train.amp: true | false | "auto")
        for arg in args[:-1]:
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        return _coerce(value, args[-1], key)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(hint), key)
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise _type_error(key, value, "a list")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(key, value, "true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _type_error(key, value, "an integer")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise _type_error(key, value, "a number")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _type_error(key, value, "a string")
    raise ConfigError(f"Config key '{key}' has an unsupported type {_type_name(hint)}.")


def _coerce_tuple(value, args, key: str):
    if isinstance(value, str):  # 'crop,flip' from the command line
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise _type_error(key, value, "a list")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(v, args[0], key) for v in value)
    if len(value) != len(args):
        raise _type_error(key, value, f"a list of {len(args)} values")
    return tuple(_coerce(v, a, key) for v, a in zip(value, args))


def _type_error(key: str, value, expected: str) -> ConfigError:
    return ConfigError(
        f"Config key '{key}' must be {expected}, got {type(value).__name__} {value!r:.100}."
    )


def _check_run_name(name) -> None:
    """train.name is one folder inside train.out: no separators, no '.' or '..', so a run can
    never be written outside `out` (`--name ../../x`)."""
    if name is None:
        return
    text = str(name)
    bad = (not text.strip() or text in (".", "..") or "/" in text or "\\" in text or "\0" in text
           or text != text.strip())
    if bad:
        raise ConfigError(
            f"train.name (--name) must be a single folder name inside train.out (--out), got "
            f"{text!r}: it may not be empty, '.' or '..', contain '/' or '\\', or start or end "
            "with spaces. Use --out to choose where runs go, e.g. --out runs/lab1 --name baseline."
        )


def _check_model_options(name: str, spec, options: dict) -> dict:
    """Validate zoo options (flat in YAML) against the zoo entry's options and their types."""
    if spec is not None:
        if options:
            raise ConfigError(
                f"Model options {sorted(options)} were given with an inline model.spec; options "
                "only apply to zoo models (edit the spec instead)."
            )
        return {}
    names = list(models.names())
    if name not in names:
        raise ConfigError(
            f"Unknown model 'model.name: {name}'. Zoo models: {', '.join(names)}."
            f"{did_you_mean(name, names)} (Or give an inline 'model.spec'.)"
        )
    defaults = dict(models.get(name).options)
    checked = {}
    for key, value in options.items():
        if key not in defaults:
            valid = ["name", "spec", *defaults]
            raise ConfigError(
                f"Unknown config key 'model.{key}' for model '{name}' (value {value!r:.100}). "
                f"Valid keys in 'model': {', '.join(valid)}.{did_you_mean(key, valid)}"
            )
        default = defaults[key]
        hint = type(default) if default is not None else None
        checked[key] = value if hint is None or value is None else _coerce(value, hint, f"model.{key}")
    return checked


def _check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(
            f"Config key '{key}' must be one of {', '.join(choices)}, got {value!r}."
            f"{did_you_mean(str(value), choices)}"
        )


def _check_range(key: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(f"Config key '{key}' must be {expected}, got {value!r}.")


def _check_values(c: Config) -> None:
    """Value checks that types alone cannot express."""
    _check_choice("optim.name", c.optim.name, OPTIMIZERS)
    _check_choice("schedule.name", c.schedule.name, SCHEDULES)
    _check_choice("train.engine", c.train.engine, engines.names())
    _check_choice("train.monitor", c.train.monitor, MONITORS)
    for aug in c.data.augment:
        _check_choice("data.augment", aug, AUGMENTATIONS)
    for view in c.eval.tta:
        _check_choice("eval.tta", view, TTA_VIEWS)
    _check_range("data.translate", c.data.translate, c.data.translate >= 0, "an integer >= 0")
    _check_range("data.cutout", c.data.cutout, c.data.cutout >= 1, "an integer >= 1")
    for logger in c.train.loggers:
        _check_choice("train.loggers", logger, LOGGERS)
    finite = math.isfinite
    _check_range("data.val_fraction", c.data.val_fraction, 0 <= c.data.val_fraction < 1, "in [0, 1)")
    tl = c.data.train_limit
    _check_range("data.train_limit", tl, tl is None or tl > 0, "a positive integer or null")
    test_limit = c.data.test_limit
    _check_range("data.test_limit", test_limit, test_limit is None or test_limit > 0,
                 "a positive integer or null")
    _check_range("optim.lr", c.optim.lr, finite(c.optim.lr) and c.optim.lr > 0, "a positive number")
    _check_range("optim.momentum", c.optim.momentum, 0 <= c.optim.momentum < 1, "in [0, 1)")
    _check_range("optim.weight_decay", c.optim.weight_decay, c.optim.weight_decay >= 0, ">= 0")
    _check_range("optim.eps", c.optim.eps, c.optim.eps > 0, "> 0")
    _check_range("optim.bias_lr_scale", c.optim.bias_lr_scale,
                 finite(c.optim.bias_lr_scale) and c.optim.bias_lr_scale > 0, "a positive number")
    bias_wd = c.optim.bias_weight_decay
    _check_range("optim.lookahead_steps", c.optim.lookahead_steps, c.optim.lookahead_steps >= 0,
                 "an integer >= 0 (0: no Lookahead)")
    _check_range("optim.lookahead_alpha", c.optim.lookahead_alpha, 0 < c.optim.lookahead_alpha <= 1,
                 "in (0, 1]")
    _check_range("optim.bias_weight_decay", bias_wd, bias_wd is None or bias_wd >= 0, ">= 0 or null")
    b1, b2 = c.optim.betas
    _check_range("optim.betas", list(c.optim.betas), 0 <= b1 < 1 and 0 <= b2 < 1, "two numbers in [0, 1)")
    if c.optim.nesterov and (c.optim.name != "sgd" or c.optim.momentum <= 0):
        raise ConfigError(
            f"optim.nesterov needs optim.name 'sgd' with momentum > 0, got name "
            f"{c.optim.name!r} and momentum {c.optim.momentum}."
        )
    s = c.schedule
    _check_range("schedule.step_size", s.step_size, s.step_size >= 1, "an integer >= 1")
    _check_range("schedule.gamma", s.gamma, s.gamma > 0, "> 0")
    _check_range("schedule.warmup_epochs", s.warmup_epochs,
                 s.warmup_epochs is None or 0 <= s.warmup_epochs, ">= 0 or null (the default warmup)")
    _check_range(
        "schedule.warmup_start_factor", s.warmup_start_factor, 0 < s.warmup_start_factor <= 1, "in (0, 1]"
    )
    _check_range("schedule.min_lr", s.min_lr, s.min_lr >= 0, ">= 0")
    _check_range("schedule.pct_start", s.pct_start, 0 < s.pct_start < 1, "in (0, 1)")
    _check_range("schedule.max_lr", s.max_lr, s.max_lr is None or s.max_lr > 0, "> 0 or null")
    t = c.train
    _check_range("train.epochs", t.epochs, t.epochs >= 1, "an integer >= 1")
    _check_range("train.batch_size", t.batch_size, t.batch_size >= 1, "an integer >= 1")
    _check_range("train.seed", t.seed, t.seed >= 0, "an integer >= 0")
    _check_range("train.label_smoothing", t.label_smoothing, 0 <= t.label_smoothing < 1, "in [0, 1)")
    _check_range("train.patience", t.patience, t.patience is None or t.patience >= 1, ">= 1 or null")
    _check_range("train.threads", t.threads, t.threads is None or t.threads >= 1, ">= 1 or null")
    ema = t.ema
    _check_range("train.ema", ema, ema is None or 0 <= ema < 1, "in [0, 1) or null (0 or null: off)")
    _check_range("train.amp", t.amp, t.amp in (True, False, "auto"), "auto, true or false")
    if t.amp is True and t.engine != "torch":
        raise ConfigError(
            f"train.amp: true asks for bf16 autocast, which only the torch engine has; got "
            f"train.engine {t.engine!r}. Leave train.amp at auto (or false) for the {t.engine} engine."
        )
    if t.compile and t.engine != "torch":
        raise ConfigError(
            f"train.compile uses torch.compile, which only the torch engine has; got train.engine "
            f"{t.engine!r}. Set train.compile to false for the {t.engine} engine."
        )
    _check_run_name(t.name)
    dev = t.device
    ok_device = dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())
    _check_range("train.device", dev, ok_device, "auto, cpu, cuda or cuda:N")
    if c.data.val_fraction == 0 and t.monitor.startswith("val_"):
        raise ConfigError(
            f"data.val_fraction is 0, so there is no validation set for train.monitor "
            f"'{t.monitor}'. Set data.val_fraction > 0 or train.monitor to train_acc/train_loss."
        )
