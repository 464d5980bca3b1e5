"""Reading run folders and the study state file as plain data.

The report reads only what is on disk: `study.json`, and each run's `config.yaml`,
`metrics.csv` and `result.json` (see docs/ARCHITECTURE.md). It does not import the trainer.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.utils import read_json

STATE_FILE = "study.json"
STATE_FORMAT = 1


@dataclass
class RunRecord:
    """One run folder as plain data; missing files give empty values (a crashed run may lack them)."""

    path: Path
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    result: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.result.get("status", "missing"))

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def _number(text: str) -> float | int | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value


def read_metrics(path: Path) -> list[dict]:
    """metrics.csv as a list of dicts: epoch as int, every other column as float (NaN kept)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for row in csv.DictReader(f):
            parsed = {k: _number(v) for k, v in row.items() if k is not None}
            if "epoch" in parsed and isinstance(parsed["epoch"], float) and math.isfinite(parsed["epoch"]):
                parsed["epoch"] = int(parsed["epoch"])
            rows.append(parsed)
    return rows


def read_run(path: str | Path) -> RunRecord:
    """A run folder (`config.yaml`, `metrics.csv`, `result.json`) as a RunRecord."""
    import yaml

    path = Path(path)
    if not path.is_dir():
        raise CnnlabError(f"Run folder '{path}' does not exist; give a folder written by `cnnlab train`.")
    config = {}
    if (path / "config.yaml").is_file():
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    result = read_json(path / "result.json") if (path / "result.json").is_file() else {}
    return RunRecord(path, config, read_metrics(path / "metrics.csv"), result)


def latest_version(seed_dir: Path) -> Path | None:
    """The newest `v<N>` folder that train() made under `seed_dir`, or None."""
    if not seed_dir.is_dir():
        return None
    versions = [(int(m.group(1)), p) for p in seed_dir.iterdir() if (m := re.fullmatch(r"v(\d+)", p.name)) and p.is_dir()]
    return max(versions)[1] if versions else None


def is_run_dir(path: Path) -> bool:
    return (path / "result.json").is_file() or (path / "metrics.csv").is_file()


def resolve_run_dir(path: str | Path) -> Path:
    """A run folder itself, or a `runs/<name>` folder whose newest `v<N>` is taken."""
    path = Path(path)
    if is_run_dir(path):
        return path
    newest = latest_version(path)
    if newest is not None and is_run_dir(newest):
        return newest
    raise CnnlabError(
        f"'{path}' is not a run folder: it has no result.json or metrics.csv, and no v<N> "
        "folder with them. Give a folder written by `cnnlab train` (e.g. runs/small_cnn-mnist/v1)."
    )


NOT_STARTED = "not started"


def run_status(entry: dict, study_dir: str | Path | None = None) -> str:
    """What one study.json run entry is now: completed, failed, diverged, interrupted, running
    or not started.

    `pending` (planned, never started) reads as "not started", not as a failure. A `running`
    entry whose study no longer holds the folder's lock was cut off (its parent died), so it
    reads as interrupted; with `study_dir` None it is taken as running.
    """
    status = str(entry.get("status") or "pending")
    if status == "pending":
        return NOT_STARTED
    if status == "running" and study_dir is not None:
        from cnnlab.study.lock import is_locked

        return "running" if is_locked(study_dir) else "interrupted"
    return status


def status_counts(statuses) -> dict:
    """{"completed": n, "failed": n (diverged included), "interrupted": n, "running": n,
    "not started": n} for an iterable of `run_status` values."""
    counts = {"completed": 0, "failed": 0, "interrupted": 0, "running": 0, NOT_STARTED: 0}
    for status in statuses:
        key = "failed" if status not in counts else status
        counts[key] += 1
    return counts


def read_state(study_dir: str | Path) -> dict:
    """The study's `study.json`; a clear error when `study_dir` is not a study folder."""
    path = Path(study_dir) / STATE_FILE
    if not path.is_file():
        raise CnnlabError(
            f"'{study_dir}' is not a study folder: it has no {STATE_FILE}. Give the folder "
            "that `cnnlab study` printed (by default studies/<study name>)."
        )
    state = read_json(path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CnnlabError(f"'{path}' is not a study state file of format {STATE_FORMAT}.")
    return state
