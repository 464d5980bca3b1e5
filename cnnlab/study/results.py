"""From run folders to numbers: per-variant aggregates, comparisons, curve bands, diagnostics.

`StudyData` is what a report needs and nothing about how the runs were trained: the base config,
the variants and what each changes, and the run folders read back as plain data. It comes from
a study folder (`from_study_dir`) or from loose run folders (`from_run_dirs`, each run its own
variant). Everything else here is a pure function of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cnnlab.errors import CnnlabError
from cnnlab.runs import RunRecord, find_run_dir, read_run
from cnnlab.study import diagnostics, effects, stats
from cnnlab.study.spec import DEFAULT_GROUPS, slugify
from cnnlab.study.store import read_state, run_status, status_counts

CURVE_KEYS = ("train_loss", "val_loss", "train_acc", "val_acc")


@dataclass
class RunEntry:
    """One planned run: its variant and seed, its status in the study, and its folder if any."""

    variant: str
    seed: int | str
    status: str
    record: RunRecord | None = None
    error: str | None = None
    log: str | None = None
    wall_s: float | None = None


@dataclass
class StudyData:
    name: str
    description: str
    base: dict
    variants: list[dict]  # {"name", "slug", "changes"} in study order
    baseline: str
    runs: list[RunEntry] = field(default_factory=list)
    profile: str | None = None
    profile_description: str = ""
    profile_set: dict = field(default_factory=dict)
    seeds: list = field(default_factory=list)
    match_params: str | None = None
    source: str = ""
    groups: tuple[str, ...] = DEFAULT_GROUPS  # variants compare only within equal values of these
    min_effect: float | None = None  # accuracy points worth detecting (the study's report.min_effect)
    adaptive: dict | None = None  # adaptive seeds: {min, max, until_ci, seeds}, from study.json
    search: dict | None = None  # a search study: `cnnlab.study.search.summary` (trials, best, importances)

    def runs_of(self, variant: str) -> list[RunEntry]:
        return [r for r in self.runs if r.variant == variant]

    def completed(self, variant: str) -> list[RunRecord]:
        return [r.record for r in self.runs_of(variant) if r.status == "completed" and r.record is not None]

    @property
    def failed(self) -> list[RunEntry]:
        return [r for r in self.runs if r.status != "completed"]


def from_study_dir(study_dir: str | Path) -> StudyData:
    """Read `study.json` and every run folder it names."""
    return from_state(read_state(study_dir), study_dir)


def from_state(state: dict, study_dir: str | Path) -> StudyData:
    """A study's state (study.json's content, perhaps not yet written) and the run folders it names."""
    study_dir = Path(study_dir)
    runs = []
    for entry in state["runs"].values():
        record = None
        if entry.get("path") and (study_dir / entry["path"]).is_dir():
            record = read_run(study_dir / entry["path"])
        status = run_status(entry, study_dir)
        if status == "completed" and (record is None or not record.completed):
            status, entry = "failed", {**entry, "error": "marked completed, but its result.json is missing"}
        runs.append(RunEntry(entry["variant"], entry["seed"], status, record, entry.get("error"),
                             entry.get("log"), entry.get("wall_s")))
    groups, min_effect = report_options(state.get("source", ""), state.get("profile"))
    return StudyData(
        name=state["name"], description=state.get("description", ""), base=state["base"],
        variants=state["variants"], baseline=state["baseline"], runs=runs, profile=state.get("profile"),
        profile_description=state.get("profile_description", ""), profile_set=state.get("profile_set", {}),
        seeds=state.get("seeds", []), match_params=state.get("match_params"), source=state.get("source", ""),
        groups=tuple(state.get("groups", groups)), min_effect=state.get("min_effect", min_effect),
        adaptive=state.get("adaptive_seeds"), search=_search_summary(study_dir, state.get("search")),
    )


def _search_summary(study_dir: Path, settings: dict | None) -> dict | None:
    if not settings:
        return None
    from cnnlab.study import search

    return search.summary(study_dir, settings)


def rerun_summary(data: StudyData) -> dict:
    """A search's re-run of its best configuration: seeds, test accuracies (fractions), mean,
    sample std and the 95% CI of the mean (NaN below 3 runs, where it would span tens of points)."""
    done = [r for r in data.runs if r.status == "completed" and r.record is not None
            and isinstance(r.record.result.get("test_acc"), (int, float))]
    accs = [float(r.record.result["test_acc"]) for r in done]
    ci = stats.one_sample(accs) if len(accs) >= 3 else None
    return {"seeds": [r.seed for r in done], "planned": len(data.runs), "test_acc": accs,
            "mean": stats.mean(accs), "std": stats.sample_std(accs),
            "ci_low": ci.ci_low if ci else math.nan, "ci_high": ci.ci_high if ci else math.nan}


def search_results(study_dir: str | Path) -> dict:
    """A search study folder as plain data: `settings`, `trials` (number, state, params, val_acc,
    epochs, path, error, retry links), `best` (number, params, val_acc), `importances` (or None
    with `importances_note` saying why) and `rerun` (see `rerun_summary`; test accuracy only
    there). Accuracies are fractions."""
    data = from_study_dir(study_dir)
    if data.search is None:
        raise CnnlabError(f"'{study_dir}' is not a search study: its study file has no 'search:' block.")
    return {**data.search, "rerun": rerun_summary(data)}


def seed_decisions(data: StudyData, result: effects.Analysis | None = None) -> list:
    """Adaptive seeds: why each comparison stopped adding seeds (`cnnlab.study.adaptive`), from
    the runs the study planned; [] for a study with a fixed number of seeds."""
    from cnnlab.study import adaptive

    if not data.adaptive:
        return []
    result = result if result is not None else analysis(data)
    planned = {v["name"]: len(data.runs_of(v["name"])) for v in data.variants}
    completed = {v["name"]: len(data.completed(v["name"])) for v in data.variants}
    return adaptive.decide(result, planned, completed, data.adaptive["until_ci"], data.adaptive["max"])


def report_options(source: str, profile: str | None) -> tuple[tuple[str, ...], float | None]:
    """`groups` and `report.min_effect` from the study file, read when the report is written.

    They shape how results are compared, not what ran, so they come from the study file as it is
    now (change min_effect and re-write the report without re-running); without a readable file,
    the defaults.
    """
    from cnnlab.study.spec import load_study

    if not source or not Path(source).is_file():
        return DEFAULT_GROUPS, None
    try:
        study = load_study(source, profile=profile)
    except CnnlabError:
        return DEFAULT_GROUPS, None
    return study.groups, study.min_effect


def flatten(config: dict, prefix: str = "") -> dict:
    """{'optim': {'lr': 0.1}} -> {'optim.lr': 0.1}; lists stay values."""
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_changes(base: dict, config: dict, ignore: Sequence[str] = ("train.seed", "train.threads", "train.name", "train.out")) -> dict:
    """The dotted keys whose values differ between two configs (missing keys count as None)."""
    a, b = flatten(base), flatten(config)
    return {k: b.get(k) for k in sorted(set(a) | set(b)) if k not in ignore and a.get(k) != b.get(k)}


def from_run_dirs(run_dirs: Sequence[str | Path], name: str = "comparison") -> StudyData:
    """Loose run folders as a study: each run is its own variant; the first is the baseline."""
    if len(run_dirs) < 1:
        raise CnnlabError("compare needs at least one run folder (two or more to compare).")
    records = [read_run(find_run_dir(p)) for p in run_dirs]
    base = records[0].config
    labels = [_run_label(r.path) for r in records]
    for i, label in enumerate(labels):  # keep labels unique when folders share names
        if labels.count(label) > 1:
            labels[i] = str(records[i].path)
    variants, runs, used = [], [], set()
    for label, record in zip(labels, records):
        slug = slugify(label)
        while slug in used:
            slug += "-x"
        used.add(slug)
        variants.append({"name": label, "slug": slug, "changes": config_changes(base, record.config)})
        status = "completed" if record.completed else record.status
        runs.append(RunEntry(label, record.config.get("train", {}).get("seed", "?"), status, record,
                             record.result.get("error"), str(record.path / "log.txt")))
    return StudyData(name=name, description="", base=base, variants=variants, baseline=labels[0], runs=runs)


def _run_label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}" if path.name.startswith("v") and path.name[1:].isdigit() else path.name


# --- numbers ----------------------------------------------------------------------------------------


def _values(records: Sequence[RunRecord], key: str) -> list[float]:
    out = []
    for r in records:
        value = r.result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append(float(value))
    return out


def _common(records: Sequence[RunRecord], key: str):
    """The value all runs share, or a '/'-joined list when they differ."""
    values = []
    for r in records:
        value = r.result.get(key)
        if value is not None and value not in values:
            values.append(value)
    return values[0] if len(values) == 1 else "/".join(map(str, values)) if values else None


def _unfinished(data: StudyData, variant: str) -> dict:
    """Runs of a variant left out of the numbers, by why: failed (or diverged), interrupted,
    not started (planned only) and running; completed runs whose result is gone count as failed."""
    counts = status_counts(r.status for r in data.runs_of(variant))
    failed = counts["failed"] + counts["completed"] - len(data.completed(variant))
    return {"n_failed": failed, "n_interrupted": counts["interrupted"],
            "n_not_started": counts["not started"], "n_running": counts["running"]}


def variant_settings(data: StudyData) -> dict[str, dict]:
    """Each variant's settings as declared: the base config, then the variant's changes, then
    the profile's `set`, as flat dotted keys (the order in which a run's config is built)."""
    base = flatten(data.base)
    return {v["name"]: {**base, **flatten(v["changes"]), **flatten(data.profile_set)} for v in data.variants}


def variant_samples(data: StudyData, key: str = "test_acc") -> dict[str, list[tuple]]:
    """variant -> [(seed, value), ...] over its completed runs with a finite `key`."""
    out = {}
    for v in data.variants:
        pairs = []
        for run in data.runs_of(v["name"]):
            if run.status == "completed" and run.record is not None:
                value = run.record.result.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    pairs.append((run.seed, float(value)))
        out[v["name"]] = pairs
    return out


def analysis(data: StudyData, groups: Sequence[str] | None = None, min_effect: float | None = None) -> effects.Analysis:
    """Comparisons, factor effects and interactions of a study's test accuracy (one Holm family).
    `groups` and `min_effect` (accuracy points) default to the study's own."""
    points = min_effect if min_effect is not None else data.min_effect
    return effects.analyse(
        variant_samples(data), variant_settings(data), data.baseline,
        group_keys=tuple(groups) if groups is not None else data.groups,
        min_effect=points / 100.0 if points is not None else None,
    )


def power_dict(power: effects.Power) -> dict:
    return {"detectable": power.detectable, "n": power.n, "min_effect": power.min_effect, "n_needed": power.n_needed}


def aggregate_rows(data: StudyData, result: effects.Analysis | None = None) -> list[dict]:
    """One dict per variant: accuracy mean/std over seeds, costs, and the test against its
    reference: the baseline, or in another group (e.g. another dataset) the baseline's twin there."""
    result = result if result is not None else analysis(data)
    against = {c.variant: c for c in result.comparisons}
    references = {g.reference: g.label for g in result.groups}
    rows = []
    for variant in data.variants:
        name = variant["name"]
        records = data.completed(name)
        accs = _values(records, "test_acc")
        s_epoch = _values(records, "s_per_epoch")
        row = {
            "variant": name, "baseline": name == data.baseline, "changes": variant["changes"],
            "n": len(records), **_unfinished(data, name),
            "test_acc": accs, "test_acc_mean": stats.mean(accs), "test_acc_std": stats.sample_std(accs),
            "best_epoch_mean": stats.mean(_values(records, "best_epoch")),
            "best_val_acc_mean": stats.mean(_values(records, "best_val_acc")),
            "params": _common(records, "params"), "macs": _common(records, "macs"),
            "s_per_epoch_mean": stats.mean(s_epoch), "s_per_epoch_std": stats.sample_std(s_epoch),
            "img_per_s_mean": stats.mean(_values(records, "img_per_s")),
            "train_s_mean": stats.mean(_values(records, "train_s")),
            "epochs_mean": stats.mean(_values(records, "epochs_run")),
            "engine": _common(records, "engine"), "device": _common(records, "device"),
            "model": _common(records, "model"), "dataset": _common(records, "dataset"),
            "reference_of": references.get(name),
        }
        if name in against:
            c = against[name]
            reference = "the baseline" if c.reference == data.baseline else c.reference
            row.update({"reference": c.reference, "group": c.group, "vs_baseline": c.comparison.to_dict(),
                        "power": power_dict(c.power), "verdict": stats.describe(c.comparison, reference=reference)})
        rows.append(row)
    return rows


def per_class_rows(data: StudyData) -> tuple[list[str], list[dict]]:
    """(class names, one row per variant) of test accuracy per class, mean over the completed
    runs that recorded it (`per_class_acc` in result.json); no classes when none did."""
    tables = {v["name"]: [t for t in (r.result.get("per_class_acc") for r in data.completed(v["name"]))
                          if isinstance(t, dict)] for v in data.variants}
    classes: list[str] = []  # every class seen, in first-seen order (datasets may differ)
    for variant_tables in tables.values():
        for table in variant_tables:
            classes += [c for c in table if c not in classes]
    rows = []
    for name, variant_tables in tables.items():
        means = {c: stats.mean([t[c] for t in variant_tables if isinstance(t.get(c), (int, float))])
                 for c in classes}  # NaN for a class this variant's dataset does not have
        rows.append({"variant": name, "n": len(variant_tables), "per_class": means})
    return classes, [r for r in rows if r["n"]]


def curve_bands(records: Sequence[RunRecord], key: str) -> dict:
    """Per epoch: mean, min and max of `key` over the runs that reached that epoch (NaN skipped)."""
    by_epoch: dict[int, list[float]] = {}
    for r in records:
        for row in r.metrics:
            value = row.get(key)
            if isinstance(value, float) and math.isfinite(value) and isinstance(row.get("epoch"), int):
                by_epoch.setdefault(row["epoch"], []).append(value)
    epochs = sorted(by_epoch)
    return {
        "epoch": epochs,
        "mean": [stats.mean(by_epoch[e]) for e in epochs],
        "min": [min(by_epoch[e]) for e in epochs],
        "max": [max(by_epoch[e]) for e in epochs],
        "n": [len(by_epoch[e]) for e in epochs],
    }


def variant_findings(data: StudyData, variant: str, th: diagnostics.Thresholds = diagnostics.DEFAULT) -> list[dict]:
    """Diagnostics of every run of a variant that has curves, grouped by kind.

    Each item: kind, the number of runs showing it out of those checked, advice, and for each
    run that showed it the seed, the summary and the numbers that triggered it.
    """
    checked = [r for r in data.runs_of(variant) if r.record is not None and r.record.metrics]
    grouped: dict[str, dict] = {}
    for run in checked:
        for finding in diagnostics.diagnose(run.record.metrics, th):
            group = grouped.setdefault(finding.kind, {"kind": finding.kind, "advice": finding.advice, "runs": []})
            group["runs"].append({"seed": run.seed, "summary": finding.summary, "evidence": finding.evidence})
    order = {k: i for i, k in enumerate(diagnostics.KINDS)}
    return [
        {**g, "count": len(g["runs"]), "checked": len(checked)}
        for g in sorted(grouped.values(), key=lambda g: order[g["kind"]])
    ]


def _plain(value):
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


def factor_effects(study_dir: str | Path, groups: Sequence[str] | None = None,
                   min_effect: float | None = None) -> list[dict]:
    """The factor effects of a study folder's test accuracy, as plain dicts.

    For each group (by default one per dataset), each factor (a setting that differs between
    variants) and each level against the reference level (the baseline's): the effect within
    every matched cell (all other settings equal) and its mean over the cells (`main`), each
    with its test (paired when the runs share seeds, else Welch), 95% CI and Holm-adjusted p
    over all comparisons of the study, and the smallest difference detectable at 80% power.
    Interactions are in `interactions(study_dir)`. Accuracies are fractions, not points.
    """
    result = analysis(from_study_dir(study_dir), groups, min_effect)
    return [{
        "group": e.group, "factor": e.factor, "level": _plain(e.level), "reference_level": _plain(e.reference_level),
        "main": e.main.to_dict(), "power": power_dict(e.power),
        "cells": [{"cell": c.cell, "candidate": c.candidate, "reference": c.reference, **c.comparison.to_dict()}
                  for c in e.cells],
    } for e in result.effects]


def interactions(study_dir: str | Path, groups: Sequence[str] | None = None) -> list[dict]:
    """Two-factor interaction checks of a study folder, as plain dicts with a `reading` sentence."""
    result = analysis(from_study_dir(study_dir), groups)
    return [{
        "group": x.group, "factor": x.factor, "level": _plain(x.level), "reference_level": _plain(x.reference_level),
        "by": x.by, "by_level": _plain(x.by_level), "by_reference": _plain(x.by_reference), "stratum": x.stratum,
        "at_reference": x.at_reference.to_dict(), "at_level": x.at_level.to_dict(),
        "interaction": x.interaction.to_dict(), "reading": effects.describe_interaction(x),
    } for x in result.interactions]


def aggregate(study_dir: str | Path, as_frame: bool = False):
    """The per-variant table of a study folder: a list of dicts, or a pandas DataFrame."""
    rows = aggregate_rows(from_study_dir(study_dir))
    if not as_frame:
        return rows
    try:
        import pandas as pd
    except ImportError:
        raise CnnlabError("aggregate(..., as_frame=True) needs pandas, which is not installed; "
                          "use the default list of dicts or `pip install pandas`.") from None
    return pd.DataFrame(rows).set_index("variant")
