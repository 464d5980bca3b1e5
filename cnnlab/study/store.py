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
