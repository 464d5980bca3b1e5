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
from cnnlab.study import figures, stats
from cnnlab.study.results import StudyData, aggregate_rows, from_run_dirs, from_study_dir, variant_findings
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
    return ", ".join(f"{k}={_short(v)}" for k, v in changes.items())


def _short(value, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yaml(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100).rstrip()


# --- sections ----------------------------------------------------------------------------------------


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
        Heading("Setup"), Bullets(tuple(facts)), Para("Base config:"), Pre(_yaml(data.base)),
        Para("What each variant changes:"),
        Table(("variant", "changes"), tuple((v["name"], _changes(v["changes"])) for v in data.variants)),
    ]


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


def _left_out(row: dict) -> str:
    """' (+1 failed, +2 not started)': the runs of a variant the numbers leave out, by why."""
    parts = [f"+{row.get(key, 0)} {label}" for key, label in (
        ("n_failed", "failed"), ("n_interrupted", "interrupted"), ("n_running", "running"),
        ("n_not_started", "not started")) if row.get(key)]
    return f" ({', '.join(parts)})" if parts else ""


def _comparisons(rows: list[dict], baseline: str) -> list:
    others = [r for r in rows if not r["baseline"]]
    if not others:
        return []
    lines = []
    for r in others:
        c = r["vs_baseline"]
        lines.append((
            r["variant"], _num(c["difference"] * 100, "{:+.2f}"),
            "—" if math.isnan(c["ci_low"]) else f"{c['ci_low'] * 100:+.2f} to {c['ci_high'] * 100:+.2f}",
            _num(c["p"], "{:.3g}"), _num(c["df"], "{:.1f}"), r["verdict"],
        ))
    return [
        Heading(f"Against the baseline ({baseline})"),
        Para("Difference of mean test accuracy in percentage points (variant minus baseline), its 95% "
             "confidence interval and Welch's t-test p-value (two-sided, Welch–Satterthwaite df)."),
        Table(("variant", "difference", "95% CI", "p", "df", "reading"), tuple(lines)),
    ]


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


def model_summary_text(model_cfg: dict, input_shape, num_classes: int) -> str:
    """`cnnlab.inspect.summary` of a run's model, from its config alone."""
    from cnnlab.inspect import summary
    from cnnlab.models import spec_of

    options = {k: v for k, v in model_cfg.items() if k not in ("name", "spec")}
    if model_cfg.get("spec"):
        spec, shape = model_cfg["spec"], tuple(input_shape)
    else:
        spec, shape = spec_of(model_cfg["name"], tuple(input_shape) if input_shape else None, **options)
    return str(summary(spec, input_shape=shape, num_classes=num_classes))


def _summaries(data: StudyData) -> list:
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
            text = model_summary_text(model_cfg, record.result.get("input_shape"), int(record.result.get("num_classes", 10)))
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


def build_document(data: StudyData, image_prefix: str) -> list:
    rows = aggregate_rows(data)
    title = f"Study report: {data.name}" + (f" (profile {data.profile})" if data.profile else "")
    doc: list = [Heading(title, 1)]
    if data.description:
        doc.append(Para(data.description))
    doc += _setup(data) + _results(rows) + _comparisons(rows, data.baseline)
    doc += [
        Heading("Learning curves"),
        Image(f"{image_prefix}_curves.png", "learning curves", figures.png_bytes(figures.curves_figure(data))),
        Image(f"{image_prefix}_accuracy.png", "test accuracy per variant",
              figures.png_bytes(figures.accuracy_figure(data))),
    ]
    doc += _diagnostics(data) + _timing(data, rows) + _summaries(data) + _failures(data)
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


def report(study_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write `report.html` (self-contained) and `report.md` (+ PNGs) for a study folder."""
    data = from_study_dir(study_dir)
    return write_report(data, output if output is not None else Path(study_dir) / "report.html")


def compare(run_dirs: Sequence[str | Path], output: str | Path = "report.html") -> Path:
    """The same report for loose run folders: each run is its own variant, the first the baseline."""
    return write_report(from_run_dirs(run_dirs), output)
