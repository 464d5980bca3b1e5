"""Text and HTML renderings of a `Summary`; no statistics are computed here."""

from __future__ import annotations

import html
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # stats imports this module to render a Summary; types only, no cycle
    from cnnlab.inspect.stats import LayerStats, Summary

COLUMNS = ("Layer (type)", "Output shape", "Params", "MACs")
HIDDEN = "--"  # shown for a block whose children have their own rows


def shape_text(shape: tuple | None) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]" if shape is not None else HIDDEN


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.2f}"


def _row_cells(layer: LayerStats, depth: int) -> tuple[str, str, str, str]:
    indent = "  " * (layer.depth - 1)
    label = f"{indent}{layer.name.rsplit('.', 1)[-1]} ({layer.kind})"
    expanded = not layer.is_leaf and layer.depth < depth
    params = HIDDEN if expanded else f"{layer.params:,}"
    macs = HIDDEN if expanded else f"{layer.macs:,}"
    return label, shape_text(layer.out_shape), params, macs


def _footer(summary: Summary) -> list[tuple[str, str]]:
    kinds = ", ".join(f"{kind} {macs:,}" for kind, macs in summary.macs_by_kind.items())
    buffers = f"{summary.running_stat_values:,} BN running-statistic values (running_mean, running_var)"
    if summary.counter_values:
        buffers += f"; {summary.counter_values:,} num_batches_tracked counters, not counted"
    if summary.other_buffer_values:
        buffers += f"; {summary.other_buffer_values:,} other buffer values"
    return [
        ("Total params", f"{summary.total_params:,}"),
        ("Trainable params", f"{summary.trainable_params:,}"),
        ("Non-trainable params", f"{summary.non_trainable_params:,}"),
        ("Buffers (not params)", buffers),
        ("Total MACs", f"{summary.macs:,}"),
        ("Total FLOPs", f"{summary.flops:,}"),
        ("MACs by layer type", kinds or "none"),
        ("Input size (MB)", _megabytes(summary.input_bytes)),
        ("Forward/backward pass size (MB)", _megabytes(summary.forward_backward_bytes)),
        ("Params size (MB)", _megabytes(summary.param_bytes)),
        ("Estimated total size (MB)", _megabytes(summary.total_bytes)),
    ]


def _title(summary: Summary) -> str:
    shape = "x".join(str(s) for s in summary.input_shape)
    return f"{summary.model_name}: input {shape} (batch of 1), engine {summary.engine}, depth {summary.depth}"


def format_text(summary: Summary, depth: int | None = None) -> str:
    """A torchinfo-style table: one row per layer down to `depth`, then the totals."""
    depth = summary.depth if depth is None else depth
    rows = [COLUMNS] + [_row_cells(layer, depth) for layer in summary.visible_layers(depth)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    footer = _footer(summary)
    label_width = max(len(label) for label, _ in footer)
    width = max(sum(widths) + 3 * (len(widths) - 1), 88)

    def line(row) -> str:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        return "   ".join(cells).rstrip()

    out = [_title(summary), "=" * width, line(rows[0]), "=" * width]
    out += [line(row) for row in rows[1:]]
    out.append("=" * width)
    for label, value in footer:
        out.append(textwrap.fill(
            value, width, initial_indent=f"{label + ':':<{label_width + 2}}",
            subsequent_indent=" " * (label_width + 2),
        ))
    out.append("-" * width)
    out += textwrap.wrap(summary.counted_ops, width) + textwrap.wrap(summary.memory_convention, width)
    out.append("=" * width)
    return "\n".join(out) + "\n"


def format_html(summary: Summary, depth: int | None = None) -> str:
    """The same table for notebooks (`Summary._repr_html_`)."""
    depth = summary.depth if depth is None else depth
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = []
    for layer in summary.visible_layers(depth):
        label, shape, params, macs = _row_cells(layer, depth)
        pad = (layer.depth - 1) * 1.5
        body.append(
            f"<tr><td style='text-align:left;padding-left:{pad}em'>{esc(label.strip())}</td>"
            f"<td>{esc(shape)}</td><td style='text-align:right'>{esc(params)}</td>"
            f"<td style='text-align:right'>{esc(macs)}</td></tr>"
        )
    footer = "".join(
        f"<tr><th style='text-align:left'>{esc(label)}</th><td>{esc(value)}</td></tr>"
        for label, value in _footer(summary)
    )
    return (
        f"<div><p><b>{esc(_title(summary))}</b></p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"<table>{footer}</table>"
        f"<p><small>{esc(summary.counted_ops)}<br>{esc(summary.memory_convention)}</small></p></div>"
    )
