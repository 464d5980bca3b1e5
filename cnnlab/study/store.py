"""The study state file `study.json`: which runs a study has and how each ended.

Run folders themselves are read through `cnnlab.runs`; the report reads only what is on disk
and does not import the trainer.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.utils import read_json

STATE_FILE = "study.json"
STATE_FORMAT = 1


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
