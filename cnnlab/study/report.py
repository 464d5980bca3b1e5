"""The study report: one document model rendered twice, as self-contained HTML (images embedded
as base64) and as Markdown with its PNGs beside it. Both files are written atomically."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cnnlab.errors import CnnlabError
from cnnlab.study import effects, figures, stats
from cnnlab.study.adaptive import reason as adaptive_reason
from cnnlab.study.results import (StudyData, aggregate_rows, analysis, from_run_dirs, from_study_dir,
                                  per_class_rows, rerun_summary, seed_decisions, variant_findings)
from cnnlab.study.spec import format_setting
from cnnlab.study.store import status_counts
from cnnlab.utils import atomic_write_bytes, atomic_write_text

# --- a tiny document model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Pre:
    text: str


@dataclass(frozen=True)
class Image:
    filename: str  # the PNG written beside report.md
    alt: str
    png: bytes


# --- formatting ---------------------------------------------------------------------------------------


def _num(value, fmt: str = "{:.2f}") -> str:
    if value is None or isinstance(value, bool) or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, str):
        return value
    return fmt.format(value)


def _count(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{int(value):,}"
    return _num(value)


def _macs(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value / 1e6:,.2f} M"
    return _num(value)


def _changes(changes: dict) -> str:
    if not changes:
        return "(base config)"
    return ", ".join(_short(format_setting(k, v)) for k, v in changes.items())


def _short(value, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100).rstrip()


# --- sections ----------------------------------------------------------------------------------------


def config_as_run(base: dict, dotted: dict) -> dict:
    """`base` with dotted overrides applied ({'train.epochs': 2} sets base['train']['epochs'])."""
    import copy

    out = copy.deepcopy(base)
    for key, value in dotted.items():
        node = out
        *path, last = key.split(".")
        for part in path:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return out


def _quick_warning(data: StudyData) -> list:
    """A quick profile cuts runs down to check that the study runs end to end; say so first."""
    if data.profile != "quick":
        return []
    seeds = f"{len(data.seeds)} seed(s)" if data.seeds else "few seeds"
    cut = f" ({_changes(data.profile_set)}, {seeds})" if data.profile_set else f" ({seeds})"
    return [Para(f"**Quick profile: this report checks the pipeline, not the question.** Its runs are cut "
                 f"down{cut}, so the differences below say nothing about which variant is better; run the "
                 f"study without --profile for that.")]


def _setup(data: StudyData) -> list:
    facts = [f"baseline: **{data.baseline}**", f"variants: {len(data.variants)}",
             f"runs: {len(data.runs)} ({_status_text(data)})"]
    if data.seeds:
        facts.append(f"seeds: {', '.join(map(str, data.seeds))}")
    if data.profile:
        facts.append(f"profile: {data.profile}" + (f" ({data.profile_description})" if data.profile_description else "")
                     + (f", which sets {_changes(data.profile_set)} in every run" if data.profile_set else ""))
    if data.match_params:
        facts.append(f"widths scaled to the parameter count of `{data.match_params}` (±5%)")
    if data.source:
        facts.append(f"study file: {data.source}")
    return [
        Heading("Setup"), Bullets(tuple(facts)),
        Para("Base config, as the runs used it (the profile's settings applied):" if data.profile_set else "Base config:"),
        Pre(_yaml(config_as_run(data.base, data.profile_set))),
        Para("What each variant changes:"),
        Table(("variant", "changes"), tuple((v["name"], _changes(v["changes"])) for v in data.variants)),
    ]


def _left_out(row: dict) -> str:
    """' (+1 failed, +2 not started)': the runs of a variant the numbers leave out, by why."""
    parts = [f"+{row.get(key, 0)} {label}" for key, label in (
        ("n_failed", "failed"), ("n_interrupted", "interrupted"), ("n_running", "running"),
        ("n_not_started", "not started")) if row.get(key)]
    return f" ({', '.join(parts)})" if parts else ""


def _status_text(data: StudyData) -> str:
    counts = status_counts(r.status for r in data.runs)
    return ", ".join(f"{n} {label}" for label, n in counts.items() if n or label == "completed")


def _results(rows: list[dict]) -> list:
    table = Table(
        ("variant", "n", "test acc (%)", "best epoch", "params", "MACs", "s/epoch", "img/s", "engine", "device"),
        tuple((
            r["variant"] + (" (baseline)" if r["baseline"] else ""),
            f"{r['n']}" + _left_out(r),
            stats.format_mean_std(r["test_acc"]), _num(r["best_epoch_mean"], "{:.1f}"), _count(r["params"]),
            _macs(r["macs"]), _num(r["s_per_epoch_mean"]), _num(r["img_per_s_mean"], "{:,.0f}"),
            _num(r["engine"], "{}"), _num(r["device"], "{}"),
        ) for r in rows),
    )
    return [Heading("Results"), Para("Test accuracy is mean ± sample std over the completed seeds."), table]


def _pct(value: float, fmt: str = "{:+.2f}") -> str:
    return _num(value * 100 if isinstance(value, float) and math.isfinite(value) else value, fmt)


def _ci(c: stats.Comparison) -> str:
    if not c.testable:
        return "—"
    if stats.too_few_runs(c):
        return f"— (n={c.n_min}: too few runs for a CI)"
    return f"{c.ci_low * 100:+.2f} to {c.ci_high * 100:+.2f}"


def _test(c: stats.Comparison) -> str:
    if c.test == stats.PAIRED:
        return f"paired, {c.n_candidate} seeds"
    if c.test == stats.WELCH:
        return f"Welch, n={c.n_candidate} vs {c.n_baseline}"
    return "Welch–Satterthwaite contrast"


def _effect_size(c: stats.Comparison) -> str:
    return "—" if not math.isfinite(c.effect_size) else f"{c.effect_size_kind}={c.effect_size:+.2f}"


def _p(value: float) -> str:
    return "—" if math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3g}")


def power_text(power: effects.Power, paired: bool) -> str:
    """'n=3 can only detect differences ≥ 1.80 points here; detecting 0.50 points needs n=14'."""
    if not math.isfinite(power.detectable):
        return "power unknown (no spread to estimate it from)"
    if power.detectable > 1.0:  # beyond the whole accuracy scale: say so rather than print '≥ 118 points'
        text = (f"n={power.n} cannot reliably detect any difference here (80% power would need "
                f"≥ {power.detectable * 100:.0f} points, more than the accuracy scale)")
    else:
        text = f"n={power.n} can only detect differences ≥ {power.detectable * 100:.2f} points here"
    if power.min_effect is not None:
        unit = "seeds (paired)" if paired else "runs per variant"
        text += (f"; detecting {power.min_effect * 100:.2f} points needs n={power.n_needed} {unit}"
                 if power.n_needed is not None else f"; the n for {power.min_effect * 100:.2f} points is not known")
    return text


def _comparison_row(label: str, c: stats.Comparison, differs: str, power: effects.Power, reading: str) -> tuple:
    return (label, differs, _pct(c.difference), _ci(c), _test(c), _effect_size(c), _p(c.p), _p(c.p_adjusted),
            power_text(power, c.test == stats.PAIRED), reading)


COMPARISON_HEADERS = ("variant", "differs in", "difference", "95% CI", "test", "effect size", "p", "Holm p",
                      "power (80%, α=0.05)", "reading")


def _legend(result: effects.Analysis) -> Para:
    return Para(
        "Differences are in percentage points of test accuracy (variant minus reference) with their 95% "
        "confidence interval. Where both ran the same seeds the test is a paired t-test on the per-seed "
        "differences (effect size d_z: mean over std of the differences); otherwise Welch's t-test (effect "
        "size Cohen's d with the pooled std). p is the raw two-sided p-value; Holm p is adjusted by the "
        f"Holm–Bonferroni method over all {result.family_size} tests in this report, and the reading uses it. "
        "At n ≤ 2 on a side no CI is shown: it would span tens of points. The power column gives the smallest "
        "difference the comparison would detect 4 times in 5, from its observed spread and n."
    )


def _comparisons(rows: list[dict], baseline: str, result: effects.Analysis) -> list:
    readings = {r["variant"]: r.get("verdict", "") for r in rows}
    out: list = []
    for group in result.groups:
        items = [c for c in result.comparisons if c.group == group.label]
        if not items:
            continue
        if group.reference == baseline:
            title = f"Against the baseline ({baseline})"
        else:
            title = f"Against {group.reference} ({group.label}: its own reference, not the baseline)"
        out.append(Heading(title))
        if len(result.groups) > 1:
            out.append(Para(f"Only variants with {group.label} are compared here; variants in other groups "
                            f"({', '.join(g.label for g in result.groups if g is not group)}) have their own reference."))
        out.append(Table(COMPARISON_HEADERS, tuple(
            _comparison_row(c.variant, c.comparison, _differs(c.differs_in), c.power, readings.get(c.variant, ""))
            for c in items)))
    if out:
        out.append(_legend(result))
    return out


def _differs(differs: dict) -> str:
    return ", ".join(format_setting(k, new) for k, (_, new) in differs.items()) or "nothing declared"


def _factor_effects(result: effects.Analysis) -> list:
    out: list = [Heading("Factor effects")]
    if not result.effects:
        out.append(Para("No factor to analyse: no two variants of a group differ in exactly one setting."))
        return out
    out.append(Para(
        "For each factor (a setting that differs between variants of a group), the effect of each level against "
        "the reference level (the baseline's), within each matched cell (variants equal in every other setting) "
        "and averaged over the cells (the main effect). Same tests, effect sizes and Holm adjustment as above."))
    for group in result.groups:
        mine = [e for e in result.effects if e.group == group.label]
        if not mine:
            continue
        if len(result.groups) > 1:
            out.append(Heading(group.label, 3))
        rows = []
        for e in mine:
            change = f"{format_setting(e.factor, e.level)} vs {format_setting(e.factor, e.reference_level)}"
            for cell in e.cells:
                rows.append((change, ("at " + effects.where_text(cell.cell)) if cell.cell else "(no other factor varies)", _pct(cell.comparison.difference),
                             _ci(cell.comparison), _test(cell.comparison), _effect_size(cell.comparison),
                             _p(cell.comparison.p), _p(cell.comparison.p_adjusted), effects.effect_phrase(cell.comparison)))
            if len(e.cells) > 1:
                rows.append((change, f"**main effect** (mean over {len(e.cells)} cells)", _pct(e.main.difference),
                             _ci(e.main), _test(e.main), _effect_size(e.main), _p(e.main.p), _p(e.main.p_adjusted),
                             effects.effect_phrase(e.main)))
        out.append(Table(("factor", "where", "difference", "95% CI", "test", "effect size", "p", "Holm p", "reading"),
                         tuple(rows)))
        out.append(Bullets(tuple(
            f"{format_setting(e.factor, e.level)} vs {format_setting(e.factor, e.reference_level)}: "
            f"{power_text(e.power, e.main.test == stats.PAIRED)}" for e in mine)))
        checks = [x for x in result.interactions if x.group == group.label]
        out.append(Heading("Interactions" + (f" ({group.label})" if len(result.groups) > 1 else ""), 3))
        if checks:
            out.append(Bullets(tuple(effects.describe_interaction(x) for x in checks)))
        else:
            out.append(Para("No interaction to check: it needs two factors crossed (all four combinations run)."))
    return out


def _diagnostics(data: StudyData) -> list:
    out = [Heading("Diagnostics")]
    for variant in data.variants:
        findings = variant_findings(data, variant["name"])
        out.append(Heading(variant["name"], 3))
        if not any(r.record is not None and r.record.metrics for r in data.runs_of(variant["name"])):
            out.append(Para("No curves to check: no run of this variant recorded an epoch."))
        elif not findings:
            out.append(Para("No problems found in the curves."))
            continue
        items = []
        for f in findings:
            detail = "; ".join(f"seed {run['seed']}: {run['summary']}" for run in f["runs"])
            items.append(f"**{f['kind']}** ({f['count']} of {f['checked']} runs): {detail}. Advice: {f['advice']}.")
        out.append(Bullets(tuple(items)))
    return out


def _timing(data: StudyData, rows: list[dict]) -> list:
    lines = []
    for r in rows:
        walls = [run.wall_s for run in data.runs_of(r["variant"]) if isinstance(run.wall_s, (int, float))]
        lines.append((
            r["variant"], _num(r["epochs_mean"], "{:.1f}"),
            _num(r["s_per_epoch_mean"]) + ("" if math.isnan(r["s_per_epoch_std"]) else f" ± {r['s_per_epoch_std']:.2f}"),
            _num(r["img_per_s_mean"], "{:,.0f}"), _num(r["train_s_mean"], "{:.1f}"),
            _num(stats.mean(walls), "{:.1f}") if walls else "—",
        ))
    return [
        Heading("Timing"),
        Para("Means over completed runs. Wall time includes process start and data loading; runs "
             "that shared the machine slow each other, so compare times within one study."),
        Table(("variant", "epochs", "s/epoch", "img/s", "train s", "wall s"), tuple(lines)),
    ]


def _per_class(data: StudyData) -> list:
    classes, rows = per_class_rows(data)
    if not classes:
        return []
    return [
        Heading("Per-class accuracy"),
        Para("Test accuracy per class (%), mean over the completed runs of each variant; the "
             "lowest classes show where a model still confuses the data."),
        Table(("variant", "n", *classes), tuple(
            (r["variant"], str(r["n"]), *(_num(100 * r["per_class"][c]) if not math.isnan(r["per_class"][c])
                                          else "—" for c in classes)) for r in rows)),
    ]


def _summaries(data: StudyData) -> list:
    from cnnlab.inspect import summary

    out, seen = [Heading("Model summaries")], {}
    for variant in data.variants:
        record = next((r.record for r in data.runs_of(variant["name"]) if r.record and r.record.config), None)
        if record is None:
            continue
        model_cfg = record.config.get("model", {})
        key = (_yaml(model_cfg), str(record.result.get("input_shape")))
        if key in seen:
            out.append(Para(f"{variant['name']}: same model as {seen[key]}."))
            continue
        seen[key] = variant["name"]
        try:
            text = str(summary(record.path))  # the run folder's own model (its model.json)
        except (ImportError, CnnlabError, KeyError, TypeError) as err:
            text = f"summary unavailable: {type(err).__name__}: {err}"
        out += [Heading(f"{variant['name']} ({model_cfg.get('name', 'model')})", 3), Pre(text.strip())]
    return out


def _failures(data: StudyData) -> list:
    failed = data.failed
    if not failed:
        return [Heading("Failed runs"), Para("None: every planned run completed.")]
    return [
        Heading("Failed runs"),
        Para("These runs are left out of the statistics above; their logs are kept. Interrupted "
             "and not-started runs are not failures: run the study again to finish them."),
        Table(("variant", "seed", "status", "error", "log"), tuple(
            (r.variant, str(r.seed), r.status, _short(r.error or "—", 300), r.log or "—") for r in failed)),
    ]


def _adaptive_seeds(data: StudyData, result: effects.Analysis) -> list:
    decisions = seed_decisions(data, result)
    if not data.adaptive:
        return []
    a = data.adaptive
    out: list = [Heading("Adaptive seeds"), Para(
        f"Seeds were adaptive: {a['min']} per variant, then one more at a time for both sides of every "
        f"comparison whose 95% CI half-width on the difference was still at least {a['until_ci']:g} points, "
        f"up to {a['max']} seeds.")]
    if not decisions:
        return out + [Para("No comparisons: every variant has its own reference, so none needed more seeds.")]
    return out + [Table(("variant", "reference", "seeds", "95% CI half-width (points)", "stopped because"), tuple(
        (d.variant, d.reference, str(d.planned), _num(d.half_width if math.isfinite(d.half_width) else None),
         adaptive_reason(d, a["until_ci"], a["max"])) for d in decisions))]


def _search_section(data: StudyData) -> list:
    """The trials, the best configuration, parameter importances and the best configuration's re-run."""
    info = data.search
    if info is None:
        return []
    settings = info["settings"]
    trials = info["trials"]
    counts: dict = {}  # Optuna's trial states, in first-seen order
    for t in trials:
        counts[t["state"]] = counts.get(t["state"], 0) + 1
    warmup = f", never in a trial's first {settings['warmup_epochs']} epochs" if settings["warmup_epochs"] else ""
    pruning = (f"Optuna's median pruner on per-epoch validation accuracy, once {settings['startup_trials']} "
               f"trials have completed{warmup}" if settings["pruning"] else "no pruning")
    out: list = [Heading("Hyperparameter search"), Para(
        f"{settings['trials']} trials on Optuna (TPE sampler, seed {settings['sampler_seed']}; {pruning}), each a "
        f"run of the base config with the sampled settings on seed {settings['trial_seed']}. Objective: "
        f"{settings['objective']} ({settings['direction']}), the run's best validation accuracy. **The trials do not "
        "use the test set**; only the best configuration's re-run below is evaluated on it. Trials so far: "
        + (", ".join(f"{n} {state}" for state, n in counts.items()) or "none") + f"; storage: {settings['storage']}.")]
    keys = list(settings["parameters"])
    if trials:
        out.append(Table(("trial", *keys, "val acc (%)", "epochs", "state"), tuple((
            str(t["number"]), *(_short(_fmt_param(t["params"].get(k))) for k in keys), _pct(t["val_acc"], "{:.2f}"),
            str(t["epochs"]), _trial_state(t)) for t in trials)))
    best = info["best"]
    if best is None:
        out.append(Para("No trial has completed yet, so there is no best configuration."))
        return out
    out += [Heading("Best configuration", 3), Bullets(tuple(
        [f"trial {best['number']}: validation accuracy {best['val_acc'] * 100:.2f}%"]
        + [f"{k} = {_fmt_param(v)}" for k, v in best["params"].items()]))]
    out.append(Heading("Parameter importances", 3))
    if info["importances"]:
        out.append(Para("fANOVA importances (Optuna's `get_param_importances`) of the settings for the objective, "
                        "over the completed trials; they sum to 1."))
        out.append(Table(("parameter", "importance"), tuple(
            (k, f"{v:.3f}") for k, v in info["importances"].items())))
    else:
        out.append(Para(f"Parameter importances are {info['importances_note']}."))
    out.append(Heading("Re-run of the best configuration", 3))
    rerun = rerun_summary(data)
    accs, planned = rerun["test_acc"], rerun["planned"]
    if not accs:
        out.append(Para(f"No completed re-run yet ({planned} planned over seeds "
                        f"{', '.join(map(str, data.seeds))})."))
        return out
    ci_text = (f"95% CI {rerun['ci_low'] * 100:.2f} to {rerun['ci_high'] * 100:.2f}%" if math.isfinite(rerun["ci_low"])
               else f"no CI at n={len(accs)} (it needs at least 3 seeds)")
    out.append(Para(
        f"Test accuracy of the best configuration re-run over {len(accs)} fresh seed(s) "
        f"({', '.join(map(str, rerun['seeds']))}; the trials used seed {settings['trial_seed']}): "
        f"**{stats.format_mean_std(accs)}%** (mean ± std), {ci_text}."
        + (f" {planned - len(accs)} of {planned} re-runs are not completed." if planned > len(accs) else "")))
    return out


def _fmt_param(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _trial_state(t: dict) -> str:
    if t["state"] == "interrupted":
        return f"failed (interrupted; retried as trial {t['retried_as']})"
    if t["state"] == "failed" and t.get("error"):
        return f"failed: {_short(t['error'], 80)}"
    return t["state"] + (f" (retry of trial {t['retry_of']})" if t.get("retry_of") is not None else "")


def build_document(data: StudyData, image_prefix: str) -> list:
    title = f"Study report: {data.name}" + (f" (profile {data.profile})" if data.profile else "")
    doc: list = [Heading(title, 1)] + _quick_warning(data)
    if data.description:
        doc.append(Para(data.description))
    if not data.variants:  # a search that has not picked its best configuration yet
        return doc + _search_section(data)
    result = analysis(data)
    rows = aggregate_rows(data, result)
    doc += _setup(data) + _search_section(data) + _results(rows) + _comparisons(rows, data.baseline, result)
    doc += _adaptive_seeds(data, result) + _factor_effects(result)
    doc += [
        Heading("Learning curves"),
        Image(f"{image_prefix}_curves.png", "learning curves", figures.png_bytes(figures.curves_figure(data))),
        Image(f"{image_prefix}_accuracy.png", "test accuracy per variant",
              figures.png_bytes(figures.accuracy_figure(data))),
    ]
    doc += _per_class(data) + _diagnostics(data) + _timing(data, rows) + _summaries(data) + _failures(data)
    return doc


# --- renderers ------------------------------------------------------------------------------------------


def _md_inline(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(doc: Sequence) -> str:
    out = []
    for block in doc:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Pre):
            out.append(f"```\n{block.text}\n```")
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(block.headers) + " |", "|" + "---|" * len(block.headers)]
            lines += ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Image):
            out.append(f"![{block.alt}]({block.filename})")
    return "\n\n".join(out) + "\n"


def _html_inline(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")  # **bold** is the only inline markup the report uses
    escaped = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; }
@page { size: A4; margin: 14mm 12mm; }
@media print {  /* the PDF (cnnlab report --pdf): page-wide, rows and figures never cut in two */
  body { max-width: none; margin: 0; padding: 0; font-size: 10pt; }
  table { width: 100%; font-size: 7.5pt; }
  th, td { padding: 0.2em 0.35em; overflow-wrap: break-word; }  /* numbers stay whole; only over-long words break */
  thead { display: table-header-group; }
  tr, img, pre, li { break-inside: avoid; page-break-inside: avoid; }
  h1, h2, h3, h2 + p, h3 + p { break-after: avoid; page-break-after: avoid; }  /* a heading starts its content */
  p { orphans: 3; widows: 3; }
  img { width: 100%; height: auto; }
  pre { white-space: pre-wrap; overflow-x: visible; font-size: 7.5pt; }
  th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def render_html(doc: Sequence, title: str) -> str:
    out = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{STYLE}</style></head><body>"]
    for block in doc:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_html_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Pre):
            out.append(f"<pre>{html.escape(block.text)}</pre>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
            body = "".join("<tr>" + "".join(f"<td>{_html_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.png).decode("ascii")
            out.append(f"<p><img alt='{html.escape(block.alt)}' src='data:image/png;base64,{data}'></p>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_report(data: StudyData, output: str | Path) -> Path:
    """Write `output` (.html), the .md beside it and the .md's PNGs; return the HTML path."""
    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise CnnlabError(f"The report is written as HTML; give an output path ending in .html, got '{output}'.")
    doc = build_document(data, image_prefix=output.stem)
    for block in doc:
        if isinstance(block, Image):
            atomic_write_bytes(output.parent / block.filename, block.png)
    atomic_write_text(output.with_suffix(".md"), render_markdown(doc))
    atomic_write_text(output, render_html(doc, title=f"Study report: {data.name}"))
    return output


def report(study_dir: str | Path, output: str | Path | None = None, pdf: bool | str | Path = False) -> Path:
    """Write `report.html` (self-contained) and `report.md` (+ PNGs) for a study folder; return the HTML path.

    `pdf=True` also prints it to `report.pdf` beside the HTML, `pdf=PATH` to PATH (`cnnlab.study.pdf`)."""
    data = from_study_dir(study_dir)
    return _with_pdf(write_report(data, output if output is not None else Path(study_dir) / "report.html"), pdf)


def compare(run_dirs: Sequence[str | Path], output: str | Path = "report.html",
            pdf: bool | str | Path = False) -> Path:
    """The same report for loose run folders: each run is its own variant, the first the baseline."""
    return _with_pdf(write_report(from_run_dirs(run_dirs), output), pdf)


def _with_pdf(html_path: Path, pdf: bool | str | Path) -> Path:
    if pdf is not False and pdf is not None:
        from cnnlab.study.pdf import write_pdf

        try:
            write_pdf(html_path, None if pdf is True else pdf)
        except CnnlabError as error:  # the HTML is written and usable: say where it is
            raise CnnlabError(f"{error} The HTML report itself is written: {html_path}.") from None
    return html_path
