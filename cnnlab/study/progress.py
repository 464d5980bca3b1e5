"""Progress display for `run_study`: one line per finished run, or a tqdm bar on a terminal.

The runner only emits events; these reporters turn them into text.
"""

from __future__ import annotations

import sys
from typing import TextIO


def describe_event(event: dict) -> str:
    """'[3/12] completed  BN / lr=0.01  seed 1  test acc 97.12%  41.0 s' for a finished run."""
    run = event["run"]
    label = f"{run['variant']}  seed {run['seed']}"
    if event["event"] == "skip":
        return f"[skip] {label}: completed earlier"
    if event["event"] == "start":
        return f"[start] {label}"
    parts = [f"[{event['done']}/{event['total']}] {run['status']:<9} {label}"]
    if run.get("test_acc") is not None:
        parts.append(f"test acc {float(run['test_acc']):.2%}")
    if run.get("val_acc") is not None:  # a search trial: its objective (trials do not use the test set)
        parts.append(f"best val acc {float(run['val_acc']):.2%}")
    if run.get("wall_s") is not None:
        parts.append(f"{float(run['wall_s']):.1f} s")
    if run.get("error"):
        parts.append(f"error: {str(run['error']).splitlines()[-1][:160]}")
        if run.get("log"):
            parts.append(f"log: {run['log']}")
    return "  ".join(parts)


class LineProgress:
    """Prints one line per finished or skipped run (what logs and CI want)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def __call__(self, event: dict) -> None:
        if event["event"] in ("done", "skip"):
            print(describe_event(event), file=self.stream, flush=True)


class BarProgress:
    """A tqdm bar over all runs, with failed runs printed above it."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.bar = None

    def __call__(self, event: dict) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=event["total"], unit="run", file=self.stream, dynamic_ncols=True)
        if event["event"] == "skip":
            self.bar.update(1)
        elif event["event"] == "start":
            self.bar.set_postfix_str(f"running {event['run']['variant']} seed {event['run']['seed']}")
        else:
            if event["run"]["status"] != "completed":
                self.bar.write(describe_event(event), file=self.stream)
            self.bar.update(1)
            if event["done"] >= event["total"]:
                self.bar.close()


def default_progress(stream: TextIO | None = None):
    """A bar on a terminal, lines otherwise."""
    stream = stream or sys.stderr
    return BarProgress(stream) if getattr(stream, "isatty", lambda: False)() else LineProgress(stream)
