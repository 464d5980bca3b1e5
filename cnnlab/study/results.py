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
from cnnlab.study import diagnostics, stats
from cnnlab.study.spec import slugify
from cnnlab.study.store import RunRecord, read_run, read_state, resolve_run_dir, run_status, status_counts

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

    def runs_of(self, variant: str) -> list[RunEntry]:
        return [r for r in self.runs if r.variant == variant]

    def completed(self, variant: str) -> list[RunRecord]:
        return [r.record for r in self.runs_of(variant) if r.status == "completed" and r.record is not None]

    @property
    def failed(self) -> list[RunEntry]:
        return [r for r in self.runs if r.status != "completed"]


def from_study_dir(study_dir: str | Path) -> StudyData:
    """Read `study.json` and every run folder it names."""
    study_dir = Path(study_dir)
    state = read_state(study_dir)
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
    return StudyData(
        name=state["name"], description=state.get("description", ""), base=state["base"],
        variants=state["variants"], baseline=state["baseline"], runs=runs, profile=state.get("profile"),
        profile_description=state.get("profile_description", ""), profile_set=state.get("profile_set", {}),
        seeds=state.get("seeds", []), match_params=state.get("match_params"), source=state.get("source", ""),
    )


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
    records = [read_run(resolve_run_dir(p)) for p in run_dirs]
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


def aggregate_rows(data: StudyData) -> list[dict]:
    """One dict per variant: accuracy mean/std over seeds, costs, and the test against the baseline."""
    baseline_accs = _values(data.completed(data.baseline), "test_acc")
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
        }
        if name != data.baseline:
            comparison = stats.welch(accs, baseline_accs)
            row.update({"vs_baseline": comparison.to_dict(), "verdict": stats.describe(comparison)})
        rows.append(row)
    return rows


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
