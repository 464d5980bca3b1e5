"""Which comparisons a study supports, and their statistics: each variant against its group's
reference, the effect of each grid factor within matched cells and averaged over them, and
two-factor interactions. All p-values of one analysis form one Holm family.

Plain data in, plain data out: `analyse` takes per-variant results by seed and each variant's
settings (dotted config keys, as declared), and returns frozen dataclasses. It neither reads run
folders nor formats a report (see `results` and `report`).

Comparable means: in the same group (equal values of the group keys, `data.dataset` unless the
study says otherwise), so a Fashion-MNIST variant is never tested against an MNIST baseline. A
*factor* is a setting whose value differs between variants of a group; a *cell* is a set of
variants that agree on every other setting, so a difference within a cell is the factor's alone.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from typing import Any, Hashable, Mapping, Sequence

from cnnlab.study import stats
from cnnlab.study.spec import DEFAULT_GROUPS, format_setting

Samples = Sequence[tuple[Hashable, float]]  # (seed, value) for each completed run


@dataclass(frozen=True)
class Power:
    """What a comparison could detect: the smallest difference found with 80% power at
    two-sided alpha 0.05 given its observed spread and n, and, when the study names a
    `min_effect`, the n that would detect that (pairs for a paired test, runs per side else)."""

    detectable: float  # in accuracy units, NaN when the spread is unknown
    n: int
    min_effect: float | None = None
    n_needed: int | None = None


@dataclass(frozen=True)
class Group:
    label: str  # 'data.dataset=mnist', or 'all variants' without group keys
    keys: dict  # group key -> the value all its variants share
    variants: tuple[str, ...]
    reference: str  # the baseline, or its twin in this group (same settings but the group keys)
    factors: tuple[str, ...]  # settings that differ between the group's variants


@dataclass(frozen=True)
class VariantComparison:
    variant: str
    reference: str
    group: str
    differs_in: dict  # setting -> (reference value, variant value)
    comparison: stats.Comparison
    power: Power


@dataclass(frozen=True)
class CellEffect:
    cell: dict  # the other settings, equal for both variants
    candidate: str
    reference: str
    comparison: stats.Comparison


@dataclass(frozen=True)
class FactorEffect:
    """The effect of `factor` = `level` against `reference_level`: within each matched cell, and
    averaged over the cells (the main effect)."""

    group: str
    factor: str
    level: Any
    reference_level: Any
    cells: tuple[CellEffect, ...]
    main: stats.Comparison
    power: Power


@dataclass(frozen=True)
class Interaction:
    """Does the effect of `factor` (level vs reference) depend on `by` (by_level vs by_reference)?
    `interaction` tests the difference of the two simple effects, within one stratum of the
    remaining settings: the reference's values where that square was run, else the first complete
    one (one check per pair of levels)."""

    group: str
    factor: str
    level: Any
    reference_level: Any
    by: str
    by_level: Any
    by_reference: Any
    stratum: dict
    at_reference: stats.Comparison  # factor's effect where by = by_reference
    at_level: stats.Comparison  # factor's effect where by = by_level
    interaction: stats.Comparison


@dataclass(frozen=True)
class Analysis:
    groups: tuple[Group, ...]
    comparisons: tuple[VariantComparison, ...]
    effects: tuple[FactorEffect, ...]
    interactions: tuple[Interaction, ...]
    family_size: int  # how many tested p-values Holm's adjustment counted
    min_effect: float | None = None


# --- settings, groups, cells -----------------------------------------------------------------------


def _key(value: Any) -> str:
    """A hashable, order-stable form of a setting's value (lists and dicts included)."""
    return json.dumps(value, sort_keys=True, default=str)


def varying_settings(settings: Mapping[str, Mapping[str, Any]], variants: Sequence[str]) -> tuple[str, ...]:
    """The setting keys whose values are not the same for all `variants`, in first-seen order."""
    keys: list[str] = []
    for v in variants:
        keys += [k for k in settings[v] if k not in keys]
    return tuple(k for k in keys if len({_key(settings[v].get(k)) for v in variants}) > 1)


def comparison_groups(
    settings: Mapping[str, Mapping[str, Any]], baseline: str, group_keys: Sequence[str] = DEFAULT_GROUPS,
) -> tuple[Group, ...]:
    """Variants partitioned by their values of `group_keys`, each with its reference variant."""
    order = list(settings)
    by_values: dict[str, list[str]] = {}
    for v in order:
        by_values.setdefault(_key([settings[v].get(k) for k in group_keys]), []).append(v)
    outside = [k for k in varying_settings(settings, order) if k not in group_keys]
    groups = []
    for members in by_values.values():
        keys = {k: settings[members[0]].get(k) for k in group_keys if k in settings[members[0]]}
        label = ", ".join(format_setting(k, v) for k, v in keys.items()) or "all variants"
        if len(by_values) == 1:
            label = "all variants"
        if baseline in members:
            reference = baseline
        else:  # the baseline's twin: same settings but the group keys
            twins = [v for v in members if all(_key(settings[v].get(k)) == _key(settings[baseline].get(k)) for k in outside)]
            reference = twins[0] if twins else members[0]
        factors = tuple(k for k in varying_settings(settings, members) if k not in group_keys)
        groups.append(Group(label, keys, tuple(members), reference, factors))
    return tuple(groups)


def _conditions(settings: Mapping[str, Mapping[str, Any]], members: Sequence[str], factors: Sequence[str]) -> dict:
    """Unique combinations of the factors -> the variants that have them (usually one)."""
    out: dict[tuple, list[str]] = {}
    for v in members:
        out.setdefault(tuple(_key(settings[v].get(f)) for f in factors), []).append(v)
    return out


# --- the statistics of one comparison -------------------------------------------------------------


def _by_seed(samples: Samples) -> dict | None:
    """seed -> value, or None when a seed repeats (then runs cannot be paired by seed)."""
    out = {}
    for seed, value in samples:
        if seed in out:
            return None
        out[seed] = value
    return out


def compare_samples(candidate: Samples, reference: Samples, confidence: float = 0.95) -> stats.Comparison:
    """A paired t-test over seeds when one side's seeds are all among the other's (at least two
    shared; adaptive seeds give a reference more seeds than some of its variants), else Welch."""
    a, b = _by_seed(candidate), _by_seed(reference)
    if a is not None and b is not None and (set(a) <= set(b) or set(b) <= set(a)) and min(len(a), len(b)) >= 2:
        seeds = sorted(set(a) & set(b), key=str)
        return stats.paired([a[s] for s in seeds], [b[s] for s in seeds], confidence)
    return stats.welch([v for _, v in candidate], [v for _, v in reference], confidence)


def _shared_seeds(sides: Sequence[Samples]) -> list | None:
    """The seeds every side ran, when all sides ran exactly the same seeds, each once."""
    maps = [_by_seed(s) for s in sides]
    if any(m is None for m in maps) or len({frozenset(m) for m in maps}) != 1 or len(maps[0]) < 2:
        return None
    return sorted(maps[0], key=str)


def contrast_samples(terms: Sequence[tuple[float, Samples]], confidence: float = 0.95) -> stats.Comparison:
    """sum_j w_j mean_j: per seed (then a one-sample t-test of the per-seed contrasts, d_z) when
    every term ran the same seeds, else as a Welch–Satterthwaite contrast of independent means."""
    seeds = _shared_seeds([s for _, s in terms])
    positive = math.fsum(w * stats.mean([v for _, v in s]) for w, s in terms if w > 0)
    negative = -math.fsum(w * stats.mean([v for _, v in s]) for w, s in terms if w < 0)
    if seeds is None:
        return stats.contrast([(w, [v for _, v in s]) for w, s in terms], confidence)
    maps = [(w, dict(s)) for w, s in terms]
    per_seed = [math.fsum(w * m[seed] for w, m in maps) for seed in seeds]
    return replace(stats.one_sample(per_seed, confidence), mean_candidate=positive, mean_baseline=negative)


def power_of(c: stats.Comparison, min_effect: float | None, weights_and_n: Sequence[tuple[float, int]] = ()) -> Power:
    """The detectable difference of a comparison from its spread and n (see `Power`).

    Paired and one-sample tests use df = n - 1 and se = spread / sqrt(n); Welch uses the
    two-sample form with the pooled spread; a Welch–Satterthwaite contrast uses se = spread x
    sqrt(sum w^2 / n_j) on the pooled df (`weights_and_n`), and gives no n_needed.
    """
    nan = math.nan
    if c.test == stats.PAIRED:
        n = c.n_candidate
        detectable = stats.detectable_difference(c.spread, n, stats.PAIRED) if n >= 2 else nan
        needed = stats.n_needed(min_effect, c.spread, stats.PAIRED) if min_effect else None
        return Power(detectable, n, min_effect, needed)
    if c.test == stats.WELCH:
        n, m = c.n_candidate, c.n_baseline
        detectable = stats.detectable_difference(c.spread, n, stats.WELCH, m) if n + m >= 3 and min(n, m) >= 1 else nan
        needed = stats.n_needed(min_effect, c.spread, stats.WELCH) if min_effect else None
        return Power(detectable, min(n, m), min_effect, needed)
    if not weights_and_n or math.isnan(c.spread):
        return Power(nan, c.n_min, min_effect, None)
    se = c.spread * math.sqrt(math.fsum(w * w / n for w, n in weights_and_n))
    df = sum(n - 1 for _, n in weights_and_n)
    return Power(stats.detectable_noncentrality(df) * se, c.n_min, min_effect, None)


# --- the analysis --------------------------------------------------------------------------------


def _pooled(samples: Mapping[str, Samples], variants: Sequence[str]) -> list:
    return [pair for v in variants for pair in samples.get(v, ())]


def analyse(
    samples: Mapping[str, Samples],
    settings: Mapping[str, Mapping[str, Any]],
    baseline: str,
    group_keys: Sequence[str] = DEFAULT_GROUPS,
    min_effect: float | None = None,
    confidence: float = 0.95,
) -> Analysis:
    """Every comparison a study supports, Holm-adjusted as one family.

    samples: variant -> [(seed, value), ...] of completed runs (value: test accuracy in [0, 1]).
    settings: variant -> {dotted key: value}, the settings each variant declares (in study order).
    min_effect: the smallest difference worth detecting, in the units of the values.
    """
    groups = comparison_groups(settings, baseline, group_keys)
    family: dict[tuple, stats.Comparison] = {}  # one entry per distinct test, so none counts twice
    weights: dict[tuple, list] = {}

    def pair(candidate: Sequence[str], reference: Sequence[str]) -> tuple:
        key = ("pair", tuple(candidate), tuple(reference))
        if key not in family:
            family[key] = compare_samples(_pooled(samples, candidate), _pooled(samples, reference), confidence)
        return key

    def combo(key: tuple, terms: list[tuple[float, Sequence[str]]]) -> tuple:
        if key not in family:
            pooled = [(w, _pooled(samples, vs)) for w, vs in terms]
            family[key] = contrast_samples(pooled, confidence)
            weights[key] = [(w, len(s)) for w, s in pooled]
        return key

    planned_comparisons, planned_effects, planned_interactions = [], [], []
    for g in groups:
        for v in g.variants:
            if v == g.reference:
                continue
            differs = {k: (settings[g.reference].get(k), settings[v].get(k)) for k in g.factors
                       if _key(settings[g.reference].get(k)) != _key(settings[v].get(k))}
            planned_comparisons.append((v, g, differs, pair([v], [g.reference])))
        conditions = _conditions(settings, g.variants, g.factors)
        index = {f: i for i, f in enumerate(g.factors)}

        def value_of(cond: tuple, factor: str) -> Any:
            return settings[conditions[cond][0]].get(factor)

        for factor in g.factors:
            i = index[factor]
            ref_level = _key(settings[g.reference].get(factor))
            levels = list(dict.fromkeys(c[i] for c in conditions))
            for level in levels:
                if level == ref_level:
                    continue
                cells = []
                for cond in conditions:
                    if cond[i] != ref_level:
                        continue
                    other = cond[:i] + (level,) + cond[i + 1:]
                    if other in conditions:
                        cell = {f: value_of(cond, f) for f in g.factors if f != factor}
                        cells.append((cell, conditions[other], conditions[cond]))
                if not cells:
                    continue
                cell_keys = [pair(cand, ref) for _, cand, ref in cells]
                if len(cells) == 1:
                    main_key = cell_keys[0]
                else:
                    k = len(cells)
                    terms = [t for _, cand, ref in cells for t in ((1.0 / k, cand), (-1.0 / k, ref))]
                    main_key = combo(("main", g.label, factor, level), terms)
                planned_effects.append((g, factor, level, ref_level, cells, cell_keys, main_key))

        reference_cond = next(c for c, vs in conditions.items() if g.reference in vs)
        for factor, by in itertools.combinations(g.factors, 2):
            fi, bi = index[factor], index[by]
            f_ref, b_ref = reference_cond[fi], reference_cond[bi]
            squares: dict[tuple, list[tuple]] = {}  # (level, by_level) -> complete 2x2 squares
            for cond in conditions:  # cond: the (reference, reference) corner of a 2x2 square
                if cond[fi] != f_ref or cond[bi] != b_ref:
                    continue
                for f_level in dict.fromkeys(c[fi] for c in conditions):
                    for b_level in dict.fromkeys(c[bi] for c in conditions):
                        if f_level == f_ref or b_level == b_ref:
                            continue
                        corner = list(cond)
                        corner[fi] = f_level
                        c10 = tuple(corner)
                        corner[bi] = b_level
                        c11 = tuple(corner)
                        corner[fi] = f_ref
                        c01 = tuple(corner)
                        if all(c in conditions for c in (c10, c11, c01)):
                            squares.setdefault((f_level, b_level), []).append((cond, c10, c01, c11))
            for (f_level, b_level), found in squares.items():
                # one check per pair of levels, so a large grid does not print hundreds: in the
                # square where the remaining settings are the reference's, else the first one
                cond, c10, c01, c11 = next((sq for sq in found if sq[0] == reference_cond), found[0])
                at_ref = pair(conditions[c10], conditions[cond])
                at_level = pair(conditions[c11], conditions[c01])
                inter = combo(("interaction", g.label, factor, f_level, by, b_level, cond), [
                    (1.0, conditions[c11]), (-1.0, conditions[c01]), (-1.0, conditions[c10]), (1.0, conditions[cond])])
                stratum = {f: value_of(cond, f) for f in g.factors if f not in (factor, by)}
                planned_interactions.append((g, factor, f_level, f_ref, by, b_level, b_ref, stratum,
                                             at_ref, at_level, inter))

    adjusted = dict(zip(family, stats.holm_adjust(list(family.values()))))
    family_size = sum(c.testable for c in family.values())

    def power(key: tuple) -> Power:
        return power_of(adjusted[key], min_effect, weights.get(key, ()))

    def level_value(level_key: str) -> Any:
        return json.loads(level_key)

    comparisons = tuple(VariantComparison(v, g.reference, g.label, differs, adjusted[k], power(k))
                        for v, g, differs, k in planned_comparisons)
    effects = tuple(
        FactorEffect(g.label, factor, level_value(level), level_value(ref_level), tuple(
            CellEffect(cell, " + ".join(cand), " + ".join(ref), adjusted[k])
            for (cell, cand, ref), k in zip(cells, cell_keys)), adjusted[main_key], power(main_key))
        for g, factor, level, ref_level, cells, cell_keys, main_key in planned_effects
    )
    interactions = tuple(
        Interaction(g.label, factor, level_value(fl), level_value(fr), by, level_value(bl), level_value(br), stratum,
                    adjusted[a], adjusted[b], adjusted[i])
        for g, factor, fl, fr, by, bl, br, stratum, a, b, i in planned_interactions
    )
    return Analysis(groups, comparisons, effects, interactions, family_size, min_effect)


# --- plain-language readings ---------------------------------------------------------------------


def where_text(cell: Mapping[str, Any]) -> str:
    return ", ".join(format_setting(k, v) for k, v in cell.items()) or "every other setting equal"


def _note(c: stats.Comparison) -> str:
    """'significant, Holm p=0.01' / 'not significant, Holm p=0.9' / 'n=2: too few runs to tell, ...'."""
    which = "Holm p" if c.adjusted else "p"
    if not c.testable:
        return f"untestable at n={c.n_min}"
    if stats.too_few_runs(c):
        return f"n={c.n_min}: too few runs to tell, {which}={c.decision_p:.2g}"
    return f"{'significant' if c.significant else 'not significant'}, {which}={c.decision_p:.2g}"


def effect_phrase(c: stats.Comparison, scale: float = 100.0) -> str:
    """'+1.20 points (significant, Holm p=0.01)' / '+0.10 points (not significant, Holm p=0.9)'."""
    return f"{c.difference * scale:+.2f} points ({_note(c)})"


def describe_interaction(x: Interaction, scale: float = 100.0) -> str:
    """One plain sentence: 'model.bn=false changes accuracy by -1.20 points at model.conv_blocks=3
    (significant, Holm p=0.01) but not at model.conv_blocks=2 (+0.10 points, ...)', then the test
    of the difference between the two effects."""
    change = format_setting(x.factor, x.level) + f" (against {format_setting(x.factor, x.reference_level)})"
    at_ref, at_level = format_setting(x.by, x.by_reference), format_setting(x.by, x.by_level)
    a, b, i = x.at_reference, x.at_level, x.interaction
    sig_a, sig_b = a.significant, b.significant
    if sig_a and not sig_b:
        head = (f"{change} changes accuracy by {effect_phrase(a, scale)} at {at_ref} but not at {at_level} "
                f"({b.difference * scale:+.2f} points, {_note(b)})")
    elif sig_b and not sig_a:
        head = (f"{change} changes accuracy by {effect_phrase(b, scale)} at {at_level} but not at {at_ref} "
                f"({a.difference * scale:+.2f} points, {_note(a)})")
    else:
        head = f"{change}: {effect_phrase(a, scale)} at {at_ref}, {effect_phrase(b, scale)} at {at_level}"
    if x.stratum:
        head += f" (with {where_text(x.stratum)})"
    test = stats.TEST_NAMES[i.test] if i.test != stats.PAIRED else "paired over seeds"
    if not i.testable:
        tail = "the interaction cannot be tested (too few runs)"
    elif stats.too_few_runs(i):
        tail = (f"the difference between these effects is {i.difference * scale:+.2f} points, but at n={i.n_min} "
                f"that cannot be told from noise")
    elif i.significant:
        tail = (f"the difference between these effects (interaction) is {i.difference * scale:+.2f} points, "
                f"significant (p={i.p:.2g}, Holm-adjusted p={i.decision_p:.2g}; {test})")
    else:
        tail = (f"the two effects do not differ significantly (interaction {i.difference * scale:+.2f} points, "
                f"p={i.p:.2g}, Holm-adjusted p={i.decision_p:.2g}; {test}), so the effect does not detectably "
                f"depend on {x.by}")
    return f"{head}; {tail}."
