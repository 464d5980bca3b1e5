"""Study files: parse, apply a profile, expand grid x variants x seeds into validated run specs.

A study file is YAML with these keys:

    name: bn_and_depth            # optional; defaults to the file's stem
    description: ...              # optional, shown in the report
    base: {...}                   # a training config (as for `cnnlab train`)
    grid: {optim.lr: [0.1, 0.01]} # dotted keys -> lists of values, cartesian product
    variants:                     # optional named overrides, combined with every grid point
      - {name: BN, set: {}}
      - {name: no BN, set: {model.bn: false}}
    seeds: 3                      # a count (seeds base.train.seed, +1, ...) or an explicit list,
                                  # or adaptive: {min: 3, max: 10, until_ci: 0.5} runs min seeds,
                                  # then adds one seed at a time to both sides of every comparison
                                  # whose 95% CI half-width is still >= until_ci points, up to max
    baseline: BN                  # the variant the others are compared against (default: first);
                                  # a name as the report prints it, e.g. 'BN / optim.lr=0.1'
    match_params: mlp             # scale each variant's widths to this zoo model's parameter count
    groups: [data.dataset]        # variants compare only within groups that share these keys
                                  # (the default); each group gets its own reference variant
    report: {min_effect: 0.5}     # the smallest difference worth detecting, in accuracy points:
                                  # the report says how many seeds would detect it (80% power)
    profiles:                     # named adjustments chosen with --profile
      quick: {set: {train.epochs: 1}, seeds: 2, grid: {optim.lr: [0.1]}, variants: [BN]}

A search study has `search:` instead of `grid`/`variants`/`seeds` (see `SearchSpec`):

    search:
      parameters: {optim.lr: {low: 1e-4, high: 1e-1, log: true}, train.batch_size: {choices: [64, 128]}}
      trials: 20                  # Optuna trials, each a run of base + the sampled values
      objective: val_acc          # the run's best validation accuracy (the test set is not used)
      direction: maximize
      pruning: true               # Optuna's MedianPruner on per-epoch val_acc; or
                                  # {startup_trials: 5, warmup_epochs: 0}
      sampler_seed: 0             # TPE sampler seed
      rerun_seeds: 3              # the best configuration re-run over this many fresh seeds:
                                  # only these runs are evaluated on the test set
    profiles: {quick: {set: {train.epochs: 1}, search: {trials: 4, rerun_seeds: 2}}}

Precedence, lowest to highest: base, grid point, variant `set`, profile `set` (a profile bounds
the cost of every run, so it wins), then `match_params`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.utils import did_you_mean

STUDY_KEYS = ("name", "description", "base", "grid", "variants", "seeds", "baseline", "match_params", "profiles",
              "groups", "report", "search")
REPORT_KEYS = ("min_effect",)
DEFAULT_GROUPS = ("data.dataset",)
VARIANT_KEYS = ("name", "set", "description")
PROFILE_KEYS = ("set", "seeds", "grid", "variants", "baseline", "description", "search")
DEFAULT_SEEDS = 3
ADAPTIVE_KEYS = ("min", "max", "until_ci")
SEARCH_KEYS = ("parameters", "trials", "objective", "direction", "pruning", "sampler_seed", "rerun_seeds")
PARAMETER_KEYS = ("low", "high", "log", "step", "choices")
PRUNING_KEYS = ("startup_trials", "warmup_epochs")
OBJECTIVES = {"val_acc": "maximize"}  # objective -> the direction that makes sense for it
NOT_WITH_SEARCH = ("grid", "variants", "seeds", "baseline", "match_params")

# Input shapes of the built-in datasets, so `match_params` need not load a dataset to plan a
# study. Other datasets (folder:...) fall back to the zoo model's default input shape.
DATASET_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
DATASET_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10}


@dataclass(frozen=True)
class Variant:
    name: str
    slug: str
    changes: dict  # dotted key -> value, what this variant sets on top of the base


@dataclass(frozen=True)
class AdaptiveSeeds:
    """`seeds: {min, max, until_ci}`: run `min` seeds per variant, then add seeds (one round at a
    time, to both sides of a comparison) until its 95% CI half-width is below `until_ci`
    accuracy points, or `max` seeds ran. `seeds` are all the seeds that may run, in order."""

    min: int
    max: int
    until_ci: float  # accuracy points
    seeds: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"min": self.min, "max": self.max, "until_ci": self.until_ci, "seeds": list(self.seeds)}


@dataclass(frozen=True)
class SearchParameter:
    """One searched setting: a float or int range (`log` scale, `step`), or `choices`."""

    key: str  # dotted config key
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    @property
    def is_int(self) -> bool:
        return not self.choices and all(isinstance(v, int) for v in (self.low, self.high)) and (
            self.step is None or isinstance(self.step, int))

    def to_dict(self) -> dict:
        if self.choices:
            return {"choices": list(self.choices)}
        out = {"low": self.low, "high": self.high, "log": self.log}
        return {**out, "step": self.step} if self.step is not None else out

    def describe(self) -> str:
        if self.choices:
            return f"{self.key} in {{{', '.join(_format_value(c) for c in self.choices)}}}"
        scale = ", log scale" if self.log else (f", step {self.step:g}" if self.step is not None else "")
        kind = "integer" if self.is_int else "float"
        return f"{self.key} {kind} in [{self.low:g}, {self.high:g}]{scale}"


@dataclass(frozen=True)
class SearchSpec:
    """A study's `search:` block (see the module docstring)."""

    parameters: tuple[SearchParameter, ...]
    trials: int
    objective: str = "val_acc"
    direction: str = "maximize"
    pruning: bool = True
    startup_trials: int = 5  # MedianPruner: trials that complete before any is pruned
    warmup_epochs: int = 0  # MedianPruner: epochs of each trial that are never pruned
    sampler_seed: int = 0
    rerun_seeds: int = 3

    def to_dict(self) -> dict:
        return {"parameters": {p.key: p.to_dict() for p in self.parameters}, "trials": self.trials,
                "objective": self.objective, "direction": self.direction, "pruning": self.pruning,
                "startup_trials": self.startup_trials, "warmup_epochs": self.warmup_epochs,
                "sampler_seed": self.sampler_seed, "rerun_seeds": self.rerun_seeds}


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    source: str  # the study file, or "" when built from a dict
    profile: str | None
    base: dict
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...]
    baseline: str
    match_params: str | None
    profile_set: dict = field(default_factory=dict)
    profile_description: str = ""
    groups: tuple[str, ...] = DEFAULT_GROUPS
    min_effect: float | None = None  # accuracy points
    adaptive: AdaptiveSeeds | None = None  # seeds: {min, max, until_ci}; `seeds` are then the min ones
    search: SearchSpec | None = None  # a search study (no grid or variants)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(
            f"Study '{self.name}' has no variant '{name}'; its variants are: "
            f"{', '.join(v.name for v in self.variants)}.{did_you_mean(name, [v.name for v in self.variants])}"
        )


@dataclass(frozen=True)
class RunSpec:
    """One (variant, seed): a complete, validated training config and where its run lives."""

    variant: str
    slug: str
    seed: int
    config: dict  # the resolved training config (Config.to_dict())
    matched: dict | None = None  # match_params' width factor and parameter counts, when asked

    @property
    def run_name(self) -> str:
        return f"seed{self.seed}"

    @property
    def relpath(self) -> str:
        """The run's folder relative to the study folder (train() adds a `v<N>` level inside)."""
        return f"runs/{self.slug}/{self.run_name}"

    @property
    def key(self) -> str:
        return f"{self.slug}/{self.run_name}"

    @property
    def fingerprint(self) -> str:
        """A hash of the config that decides whether a past run still counts. The thread count
        and the data folder's location are left out: they change where and how fast, not what."""
        cfg = copy.deepcopy(self.config)
        cfg.get("train", {}).pop("threads", None)
        cfg.get("data", {}).pop("data_dir", None)
        return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9.=+_-]+", "-", name.lower()).strip("-")
    return slug or "variant"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "+".join(_format_value(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _unknown_key_error(where: str, key: str, valid: tuple[str, ...]) -> ConfigError:
    return ConfigError(
        f"{where} has an unknown key '{key}'; valid keys are: {', '.join(valid)}.{did_you_mean(key, valid)}"
    )


def _check_keys(where: str, data: Mapping, valid: tuple[str, ...]) -> None:
    for key in data:
        if key not in valid:
            raise _unknown_key_error(where, str(key), valid)


def _as_mapping(where: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping (key: value), got {type(value).__name__}: {value!r}.")
    return dict(value)


def _seeds(where: str, value: Any, first: int) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a count or a list of integers, got {value!r}.")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where} must be at least 1, got {value}.")
        return tuple(range(first, first + value))
    if isinstance(value, (list, tuple)) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if len(set(value)) != len(value):
            raise ConfigError(f"{where} lists a seed twice: {list(value)}.")
        return tuple(value)
    raise ConfigError(f"{where} must be a count (e.g. 3) or a non-empty list of integers, got {value!r}.")


def _grid_axes(where: str, grid: Mapping) -> dict[str, list]:
    axes = {}
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where} '{key}' must be a non-empty list of values, got {values!r}.")
        axes[str(key)] = list(values)
    return axes


def setting_label(key: str) -> str:
    """How a variant name shows a dotted key: in full ('optim.lr'), except that a section's
    name drops '.name' ('model.name' -> 'model'), so names read 'model=mlp, optim.lr=0.05'."""
    return key[: -len(".name")] if key.endswith(".name") else key


def format_setting(key: str, value: Any) -> str:
    """'optim.lr=0.05', 'model=mlp', 'data.augment=crop+flip': one setting as variant names show it."""
    return f"{setting_label(key)}={_format_value(value)}"


def _variants(where: str, raw_variants: Any, axes: dict[str, list], keep: list | None) -> tuple[Variant, ...]:
    if raw_variants is None:
        raw_variants = []
    if not isinstance(raw_variants, list):
        raise ConfigError(f"{where} 'variants' must be a list of {{name, set}}, got {type(raw_variants).__name__}.")
    named = []
    for i, item in enumerate(raw_variants):
        if not isinstance(item, Mapping) or "name" not in item:
            raise ConfigError(f"{where} variant #{i + 1} must be a mapping with 'name' and 'set', got {item!r}.")
        _check_keys(f"{where} variant '{item['name']}'", item, VARIANT_KEYS)
        named.append((str(item["name"]), _as_mapping(f"{where} variant '{item['name']}' set", item.get("set"))))
    if keep is not None:
        names = [n for n, _ in named]
        for name in keep:
            if name not in names:
                raise ConfigError(
                    f"{where}: the profile keeps variant '{name}', which the study does not define; "
                    f"its variants are: {', '.join(names)}.{did_you_mean(str(name), names)}"
                )
        named = [(n, s) for n, s in named if n in keep]
    points = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] if axes else [{}]
    variants = []
    for point in points:
        point_name = ", ".join(format_setting(k, v) for k, v in point.items())
        for vname, changes in named or [("", {})]:
            name = " / ".join(p for p in (vname, point_name) if p) or "base"
            variants.append(Variant(name, slugify(name), {**point, **changes}))
    seen: dict[str, str] = {}
    for v in variants:
        if v.slug in seen:
            raise ConfigError(
                f"{where}: variants '{seen[v.slug]}' and '{v.name}' would share the folder name "
                f"'{v.slug}'; give them names that differ in letters or digits."
            )
        seen[v.slug] = v.name
    return tuple(variants)


def parse_study(data: Any, *, name: str = "study", source: str = "", profile: str | None = None) -> Study:
    """A `Study` from the parsed YAML mapping, with `profile` applied. Validates the structure;
    `expand` validates every run's training config."""
    where = f"Study '{source or name}'"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping with 'base:' and 'grid:' or 'variants:', got {type(data).__name__}.")
    _check_keys(where, data, STUDY_KEYS)
    if "base" not in data:
        raise ConfigError(f"{where} has no 'base:' section (the training config every run starts from).")
    base = _as_mapping(f"{where} 'base'", data["base"])
    axes = _grid_axes(f"{where} grid key", _as_mapping(f"{where} 'grid'", data.get("grid")))
    seeds_value = data.get("seeds", DEFAULT_SEEDS)
    baseline = data.get("baseline")
    keep = None
    prof: dict = {}
    profile_set: dict = {}
    profile_description = ""
    profiles = _as_mapping(f"{where} 'profiles'", data.get("profiles"))
    if profile is not None:
        if profile not in profiles:
            raise ConfigError(
                f"{where} has no profile '{profile}'; it defines: {', '.join(profiles) or 'none'}."
                f"{did_you_mean(profile, profiles)}"
            )
        prof = _as_mapping(f"{where} profile '{profile}'", profiles[profile])
        _check_keys(f"{where} profile '{profile}'", prof, PROFILE_KEYS)
        profile_set = _as_mapping(f"{where} profile '{profile}' set", prof.get("set"))
        for key, values in _grid_axes(f"{where} profile '{profile}' grid key", _as_mapping(
                f"{where} profile '{profile}' grid", prof.get("grid"))).items():
            if key not in axes:
                raise ConfigError(
                    f"{where} profile '{profile}' narrows grid key '{key}', which the study's grid does "
                    f"not have; its grid keys are: {', '.join(axes) or 'none'}.{did_you_mean(key, axes)}"
                )
            axes[key] = values
        seeds_value = prof.get("seeds", seeds_value)
        profile_description = str(prof.get("description") or "")
        baseline = prof.get("baseline", baseline)
        if "variants" in prof:
            keep = prof["variants"]
            if not isinstance(keep, list):
                raise ConfigError(f"{where} profile '{profile}' 'variants' must be a list of variant names, got {keep!r}.")
    first_seed = base.get("train", {}).get("seed", 0) if isinstance(base.get("train"), Mapping) else 0
    if not isinstance(first_seed, int) or isinstance(first_seed, bool):
        raise ConfigError(f"{where} 'base.train.seed' must be an integer, got {first_seed!r}.")
    common = dict(
        name=str(data.get("name") or name), description=str(data.get("description") or ""),
        source=source, profile=profile, base=base, match_params=data.get("match_params"),
        profile_set=profile_set, profile_description=profile_description,
        groups=_groups(where, data.get("groups", DEFAULT_GROUPS)),
        min_effect=_min_effect(where, _as_mapping(f"{where} 'report'", data.get("report"))),
    )
    if "search" in data:
        for key in NOT_WITH_SEARCH:
            if key in data or key in prof:
                raise ConfigError(
                    f"{where} has both 'search:' and '{key}:'. A search study searches one base config "
                    "(its trials are the variants, and `search.rerun_seeds` sets the seeds of the best "
                    f"configuration's re-run); remove '{key}:' or write a grid study without 'search:'.")
        overrides = _as_mapping(f"{where} profile '{profile}' search", prof.get("search"))
        search = parse_search(where, {**_as_mapping(f"{where} 'search'", data["search"]), **overrides}, profile_set)
        rerun = tuple(range(first_seed + 1, first_seed + 1 + search.rerun_seeds))  # fresh: not the trials' seed
        return Study(**common, variants=(), seeds=rerun, baseline="", search=search)
    if "search" in prof:
        raise ConfigError(f"{where} profile '{profile}' has 'search:', but the study has no 'search:' block.")
    adaptive = None
    if isinstance(seeds_value, Mapping):
        adaptive = _adaptive_seeds(f"{where} 'seeds'", seeds_value, first_seed)
        seeds = adaptive.seeds[: adaptive.min]
    else:
        seeds = _seeds(f"{where} 'seeds'", seeds_value, first_seed)
    variants = _variants(where, data.get("variants"), axes, keep)
    baseline = resolve_baseline(baseline, variants) if baseline is not None else variants[0].name
    study = Study(**common, variants=variants, seeds=seeds, baseline=baseline, adaptive=adaptive)
    study.variant(baseline)  # raises with the list of variants when the baseline is unknown
    return study


def _positive_int(where: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer of at least {minimum}, got {value!r}.")
    return value


def _adaptive_seeds(where: str, block: Mapping, first: int) -> AdaptiveSeeds:
    _check_keys(where, block, ADAPTIVE_KEYS)
    for key in ADAPTIVE_KEYS:
        if key not in block:
            raise ConfigError(f"{where} (adaptive seeds) needs '{key}'; write e.g. "
                              "seeds: {min: 3, max: 10, until_ci: 0.5}.")
    low = _positive_int(f"{where} 'min'", block["min"], 2)  # a CI needs two seeds
    high = _positive_int(f"{where} 'max'", block["max"], low)
    target = block["until_ci"]
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0:
        raise ConfigError(f"{where} 'until_ci' must be a positive number of accuracy points (the 95% CI "
                          f"half-width to reach, e.g. 0.5), got {target!r}.")
    return AdaptiveSeeds(low, high, float(target), tuple(range(first, first + high)))


def _number(where: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a number, got {value!r}.")
    return value


def _parameter(where: str, key: str, block: Any) -> SearchParameter:
    if isinstance(block, list):  # shorthand: a list of choices
        block = {"choices": block}
    block = _as_mapping(where, block)
    _check_keys(where, block, PARAMETER_KEYS)
    if "choices" in block:
        if set(block) - {"choices"}:
            raise ConfigError(f"{where} has 'choices' and also {sorted(set(block) - {'choices'})}; "
                              "give either choices or a range (low, high, log, step).")
        choices = block["choices"]
        if not isinstance(choices, list) or not choices or not all(
                isinstance(c, (str, int, float, bool, type(None))) for c in choices):
            raise ConfigError(f"{where} 'choices' must be a non-empty list of plain values, got {choices!r}.")
        return SearchParameter(key, choices=tuple(choices))
    if "low" not in block or "high" not in block:
        raise ConfigError(f"{where} needs 'low' and 'high' (a range) or 'choices' (a list), got {dict(block)!r}.")
    low, high = _number(f"{where} 'low'", block["low"]), _number(f"{where} 'high'", block["high"])
    if not low < high:
        raise ConfigError(f"{where} needs low < high, got low={low!r}, high={high!r}.")
    log = block.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where} 'log' must be true or false, got {log!r}.")
    if log and low <= 0:
        raise ConfigError(f"{where} is on a log scale, so 'low' must be positive, got {low!r}.")
    step = block.get("step")
    if step is not None:
        step = _number(f"{where} 'step'", step)
        if log or step <= 0:
            raise ConfigError(f"{where} 'step' must be positive and cannot go with a log scale, got {step!r}.")
    return SearchParameter(key, low, high, log, step)


def parse_search(where: str, block: Mapping, profile_set: Mapping | None = None) -> SearchSpec:
    """The `search:` block (with a profile's `search:` keys merged over it) as a `SearchSpec`."""
    where = f"{where} 'search'"
    _check_keys(where, block, SEARCH_KEYS)
    raw = _as_mapping(f"{where} 'parameters'", block.get("parameters"))
    if not raw:
        raise ConfigError(f"{where} needs 'parameters': the settings to search, e.g. "
                          "{optim.lr: {low: 1e-4, high: 1e-1, log: true}}.")
    for key in raw:
        if key in (profile_set or {}):
            raise ConfigError(f"{where} searches '{key}', but the profile sets it for every run; the "
                              "profile would hide the search. Remove it from the profile's 'set'.")
    parameters = tuple(_parameter(f"{where} parameter '{k}'", str(k), v) for k, v in raw.items())
    trials = _positive_int(f"{where} 'trials'", block.get("trials", 20))
    objective = str(block.get("objective", "val_acc"))
    if objective not in OBJECTIVES:
        raise ConfigError(f"{where} 'objective' must be one of: {', '.join(OBJECTIVES)} (the run's best "
                          f"validation accuracy), got {objective!r}.{did_you_mean(objective, OBJECTIVES)}")
    direction = str(block.get("direction", OBJECTIVES[objective]))
    if direction != OBJECTIVES[objective]:
        raise ConfigError(f"{where} 'direction' for objective {objective} must be {OBJECTIVES[objective]} "
                          f"(anything else would search for the worst configuration), got {direction!r}.")
    pruning = block.get("pruning", True)
    startup, warmup = 5, 0
    if isinstance(pruning, Mapping):
        _check_keys(f"{where} 'pruning'", pruning, PRUNING_KEYS)
        startup = _positive_int(f"{where} 'pruning.startup_trials'", pruning.get("startup_trials", startup), 0)
        warmup = _positive_int(f"{where} 'pruning.warmup_epochs'", pruning.get("warmup_epochs", warmup), 0)
        pruning = True
    if not isinstance(pruning, bool):
        raise ConfigError(f"{where} 'pruning' must be true, false or {{startup_trials, warmup_epochs}}, "
                          f"got {pruning!r}.")
    sampler_seed = _positive_int(f"{where} 'sampler_seed'", block.get("sampler_seed", 0), 0)
    rerun = _positive_int(f"{where} 'rerun_seeds'", block.get("rerun_seeds", 3))
    return SearchSpec(parameters, trials, objective, direction, pruning, startup, warmup, sampler_seed, rerun)


def _groups(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} 'groups' must be a list of dotted config keys (e.g. [data.dataset]), got {value!r}.")
    return tuple(value)


def _min_effect(where: str, report: dict) -> float | None:
    _check_keys(f"{where} 'report'", report, REPORT_KEYS)
    value = report.get("min_effect")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where} 'report.min_effect' must be a positive number of accuracy points "
                          f"(e.g. 0.5), got {value!r}.")
    return float(value)


def _name_parts(name: str) -> tuple[str, frozenset]:
    """'BN / lr=0.1, bn=true' -> ('BN', {('lr', '0.1'), ('bn', 'true')}) for matching names."""
    named, _, point = name.rpartition(" / ") if " / " in name else ("", "", name)
    parts = [p.strip() for p in point.split(",")]
    if not all("=" in p for p in parts):  # no grid point in this name: all of it is the variant name
        return name.strip(), frozenset()
    pairs = set()
    for p in parts:
        key, _, value = p.partition("=")
        pairs.add((key.strip(), value.strip()))
    return named.strip(), frozenset(pairs)


def _same_setting(given: tuple[str, str], printed: tuple[str, str]) -> bool:
    """'lr=0.1', 'optim.lr=1e-1' and 'optim.lr=0.1' name the same setting (the key may be given
    by its last part; values are compared as YAML reads them)."""
    import yaml

    (gkey, gvalue), (pkey, pvalue) = given, printed
    if not (gkey == pkey or pkey.endswith("." + gkey) or setting_label(gkey) == pkey):
        return False
    if gvalue == pvalue:
        return True
    try:
        return float(gvalue) == float(pvalue)  # YAML reads '5e-2' as a string, float() does not
    except ValueError:
        pass
    try:
        return yaml.safe_load(gvalue) == yaml.safe_load(pvalue)
    except yaml.YAMLError:
        return False


def resolve_baseline(given: Any, variants: tuple[Variant, ...]) -> str:
    """The variant that `baseline:` names: its exact name, or the same variant written another way
    ('lr=0.05' or 'optim.lr=5e-2' for 'optim.lr=0.05'). Unknown names are returned unchanged, so
    the caller's error lists the variants."""
    given = str(given)
    names = [v.name for v in variants]
    if given in names:
        return given
    gname, gpairs = _name_parts(given)
    matches = []
    for name in names:
        vname, vpairs = _name_parts(name)
        if vname != gname or len(vpairs) != len(gpairs):
            continue
        if all(any(_same_setting(g, p) for p in vpairs) for g in gpairs):
            matches.append(name)
    return matches[0] if len(matches) == 1 else given


def load_study(path: str | Path, profile: str | None = None) -> Study:
    """Read a study YAML file and apply `profile` (e.g. 'quick')."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"Cannot read study file '{path}': {err.strerror or err}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"Study file '{path}' is not valid YAML: {err}".replace("\n", " ")) from None
    return parse_study(data, name=path.stem, source=str(path), profile=profile)


def _match(model: dict, data: dict, target: str) -> tuple[dict, dict]:
    """The model section with widths scaled to `target`'s parameter count, and what was matched."""
    import dataclasses

    from cnnlab import models
    from cnnlab.config import ModelConfig

    dataset = str(data.get("dataset", ""))
    general = {f.name for f in dataclasses.fields(ModelConfig)} - {"options"}  # not zoo options
    options = {k: v for k, v in model.items() if k not in general and v is not None}
    name_or_spec = model.get("spec") or model.get("name")
    fragment = models.match_params(
        name_or_spec, target, input_shape=DATASET_SHAPES.get(dataset),
        num_classes=DATASET_CLASSES.get(dataset, 10), **options,
    )
    matched = {k: fragment[k] for k in ("width", "params", "target_params") if k in fragment}
    matched["target"] = target
    # the options are baked into the scaled spec, and a config takes options only with a zoo name
    kept = {k: v for k, v in model.items() if k in general - {"name", "spec"}}
    return {"name": model.get("name"), "spec": fragment["spec"], **kept}, matched


def expand(study: Study, data_dir: str | None = None) -> list[RunSpec]:
    """Every (variant, seed) as a RunSpec whose config has passed `cnnlab.config` validation.

    All configs are checked before any run starts, so a typo in the last variant fails now,
    not after an hour of training. `data_dir` sets `data.data_dir` for every run. A search
    study has no runs to plan before its search has picked a configuration.
    """
    return [spec for variant in study.variants for spec in expand_variant(study, variant, study.seeds, data_dir)]


def expand_variant(study: Study, variant: Variant, seeds, data_dir: str | None = None) -> list[RunSpec]:
    """The RunSpecs of one variant over `seeds`, its config validated once."""
    from cnnlab.config import load_config

    overrides = {**variant.changes, **study.profile_set}
    if data_dir is not None:
        overrides["data.data_dir"] = str(data_dir)
    matched = None
    try:
        config = load_config(study.base, overrides).to_dict()
        if study.match_params:
            model, matched = _match(config["model"], config["data"], str(study.match_params))
            config = load_config({**config, "model": model}).to_dict()
    except CnnlabError as err:
        raise type(err)(f"Study '{study.name}', variant '{variant.name}': {err}") from None
    specs = []
    for seed in seeds:
        seeded = copy.deepcopy(config)
        seeded.setdefault("train", {})["seed"] = seed
        specs.append(RunSpec(variant.name, variant.slug, seed, seeded, matched))
    return specs
