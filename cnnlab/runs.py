"""The run-folder format: layout and versions, and every file a run writes, as plain data.

A run lives in `<out>/<name>/v<N>/` and holds (see docs/ARCHITECTURE.md):

    config.yaml    the resolved config; written first, so it is what makes a folder a run
    model.json     the model's arguments: what to build, its options, input shape, classes,
                   engine; enough to rebuild the model from the folder alone
    metrics.csv    one row per epoch, `METRIC_COLUMNS`
    result.json    status, test metrics, costs, data statistics
    best.<suffix>  last.<suffix>   checkpoints, in the engine's format (`.pt` or `.npz`)
    log.txt        the epoch lines and any error

Training, studies, inspection and results read and write run folders only through this module.
It needs neither torch nor the trainer (config.yaml is read as a plain dict here; the typed
`Config` is `cnnlab.config`'s). Every write is atomic.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnlab import engines
from cnnlab.errors import ConfigError
from cnnlab.utils import atomic_write_text, did_you_mean, make_dirs, output_error, read_json, write_json

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.json"
METRICS_FILE = "metrics.csv"
RESULT_FILE = "result.json"
LOG_FILE = "log.txt"
CHECKPOINTS = ("best", "last")
METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_s")

_VERSION = re.compile(r"^v(\d+)$")


# --- layout and versions -------------------------------------------------------------------


def run_name(config) -> str:
    """`train.name`, or `<model>-<dataset>` made safe for a folder name (`config` is a Config)."""
    if config.train.name:
        return config.train.name
    dataset = config.data.dataset
    if dataset.startswith("folder:"):
        dataset = "folder-" + Path(dataset[len("folder:"):].rstrip("/\\")).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{config.model.name}-{dataset}")


def versions(parent: str | os.PathLike) -> list[int]:
    """The version numbers N of the `v<N>` folders under `parent`, ascending."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    return sorted(int(m.group(1)) for p in parent.iterdir()
                  if (m := _VERSION.match(p.name)) and p.is_dir())


def new_run_dir(out: str | os.PathLike, name: str) -> Path:
    """Create and return the next free `<out>/<name>/v<N>` (safe against parallel runs)."""
    parent = make_dirs(Path(out) / name)
    number = (versions(parent) or [0])[-1] + 1
    while True:
        path = parent / f"v{number}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # taken by a parallel run: try the next number
            number += 1
        except OSError as err:
            translated = output_error(err, path)
            if translated is None:
                raise
            raise translated from err


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def latest_run_dir(parent: str | os.PathLike) -> Path | None:
    """The newest `v<N>` under `parent` that is a run folder, or None."""
    for number in reversed(versions(parent)):
        candidate = Path(parent) / f"v{number}"
        if is_run_dir(candidate):
            return candidate
    return None


def find_run_dir(path: str | os.PathLike) -> Path:
    """A run folder from its path, or from `<out>/<name>` (its latest version)."""
    path = Path(path)
    if is_run_dir(path):
        return path
    latest = latest_run_dir(path)
    if latest is not None:
        return latest
    raise ConfigError(
        f"'{path}' is not a run folder: it has no {CONFIG_FILE}"
        + (" and no v<N> versions with one." if path.is_dir() else " (the folder does not exist).")
        + " Give a path like runs/<name>/v1 as written by `cnnlab train`."
    )


def checkpoint_path(run_dir: str | os.PathLike, which: str) -> Path | None:
    """`<run_dir>/<which>.pt` or `.npz` (whichever engine wrote it), or None."""
    for suffix in engines.checkpoint_suffixes():
        candidate = Path(run_dir) / f"{which}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def checkpoint_files(run_dir: str | os.PathLike) -> list[str]:
    """Names of the checkpoint files present, for messages."""
    suffixes = engines.checkpoint_suffixes()
    return sorted(p.name for p in Path(run_dir).glob("*") if p.suffix in suffixes)


# --- log.txt -------------------------------------------------------------------------------


class RunLog:
    """log.txt: lines kept in memory and the whole file rewritten atomically on each write."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []

    def write(self, line: str) -> None:
        self.lines.extend(str(line).splitlines() or [""])
        atomic_write_text(self.path, "\n".join(self.lines) + "\n")


# --- metrics.csv ---------------------------------------------------------------------------


def _csv_value(value) -> str:
    if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
        if not isinstance(value, bool):
            return str(int(value))
    return repr(float(value))  # repr round-trips exactly, so a resumed file matches


def metrics_csv_text(history: list[dict]) -> str:
    lines = [",".join(METRIC_COLUMNS)]
    lines += [",".join(_csv_value(row[c]) for c in METRIC_COLUMNS) for row in history]
    return "\n".join(lines) + "\n"


def write_metrics(path: str | os.PathLike, history: list[dict]) -> Path:
    return atomic_write_text(path, metrics_csv_text(history))


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """metrics.csv rows as dicts: epoch an int, every other column a float (NaN kept)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for row in csv.DictReader(f):
            parsed = {k: _number(v) for k, v in row.items() if k is not None}
            epoch = parsed.get("epoch")
            if isinstance(epoch, float) and math.isfinite(epoch):
                parsed["epoch"] = int(epoch)
            rows.append(parsed)
    return rows


# --- result.json and config.yaml -----------------------------------------------------------


def read_result(run_dir: str | os.PathLike) -> dict:
    """result.json, or {} when the run has not written one yet."""
    path = Path(run_dir) / RESULT_FILE
    return read_json(path) if path.is_file() else {}


def write_result(run_dir: str | os.PathLike, result: dict) -> Path:
    return write_json(Path(run_dir) / RESULT_FILE, result)


def read_config_dict(run_dir: str | os.PathLike) -> dict:
    """config.yaml as a plain dict ({} when absent)."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return {}
    fix = "restore the file as `cnnlab train` wrote it, or remove the run folder"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"'{path}' is not UTF-8 text ({err.reason} at byte {err.start}); {fix}.") from None
    except yaml.YAMLError as err:
        reason = str(err).replace("\n", " ")
        raise ConfigError(f"Could not parse '{path}' as YAML: {reason}; {fix}.") from None
    if not isinstance(config, dict):
        raise ConfigError(f"'{path}' must hold a mapping of config sections; got "
                          f"{type(config).__name__}; {fix}.")
    for section, value in config.items():
        if not isinstance(value, (dict, type(None))):  # an empty section reads as None
            raise ConfigError(f"Section '{section}' of '{path}' must be a mapping of settings; got "
                              f"{type(value).__name__} {value!r:.60}; {fix}.")
    return config


# --- model.json ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelArgs:
    """What `cnnlab.models.build` needs to rebuild a run's model.

    ref: a zoo name or an inline spec (list of layers); options: the zoo options used
    (defaults filled in); input_shape (C, H, W); num_classes; engine: its registry name;
    label: the model's name for tables and titles.
    """

    ref: object
    options: dict = field(default_factory=dict)
    input_shape: tuple = ()
    num_classes: int = 10
    engine: str = "torch"
    label: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data


def write_model_args(run_dir: str | os.PathLike, args: ModelArgs) -> Path:
    return write_json(Path(run_dir) / MODEL_FILE, args.to_dict())


def read_model_args(run_dir: str | os.PathLike) -> ModelArgs:
    """The run's model arguments from model.json; for runs written before it existed, from
    config.yaml and result.json."""
    run_dir = Path(run_dir)
    path = run_dir / MODEL_FILE
    if path.is_file():
        data = read_json(path)
        return ModelArgs(ref=data["ref"], options=dict(data.get("options") or {}),
                         input_shape=tuple(data["input_shape"]), num_classes=int(data["num_classes"]),
                         engine=data.get("engine", "torch"), label=data.get("label", ""))
    config, result = read_config_dict(run_dir), read_result(run_dir)
    missing = [k for k in ("input_shape", "num_classes") if k not in result]
    if missing:
        raise ConfigError(
            f"Run '{run_dir}' has no {MODEL_FILE} and its {RESULT_FILE} lacks "
            f"{', '.join(missing)} (the run is incomplete), so its model cannot be rebuilt."
        )
    model = dict(config.get("model") or {})
    spec = model.pop("spec", None)
    name = model.pop("name", None) or ("spec" if spec is not None else "small_cnn")
    return ModelArgs(ref=spec if spec is not None else name, options={} if spec is not None else model,
                     input_shape=tuple(result["input_shape"]), num_classes=int(result["num_classes"]),
                     engine=(config.get("train") or {}).get("engine", "torch"), label=name)


# --- a whole folder as plain data ----------------------------------------------------------


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


def read_run(path: str | os.PathLike) -> RunRecord:
    """A run folder's config.yaml, metrics.csv and result.json as a RunRecord."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"Run folder '{path}' does not exist; give a folder written by `cnnlab train`.")
    return RunRecord(path, read_config_dict(path), read_metrics(path / METRICS_FILE), read_result(path))


# --- listing many run folders ----------------------------------------------------------------

LIST_COLUMNS = ("name", "version", "model", "dataset", "engine", "status", "epochs",
                "best_val_acc", "test_acc", "s_per_epoch", "date", "path")


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Every run folder at or under `root` (study runs included), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"'{root}' is not a directory; give the folder that holds run folders "
                          "(train.out, default runs) or a study folder.")
    if is_run_dir(root):
        return [root]
    return sorted(p.parent for p in root.rglob(CONFIG_FILE) if p.is_file())


def run_row(run_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> dict:
    """One run folder as a flat row of `LIST_COLUMNS` (missing values are None)."""
    from datetime import datetime

    run_dir = Path(run_dir)
    result, config = read_result(run_dir), read_config_dict(run_dir)
    train, model, data = (config.get(k) or {} for k in ("train", "model", "data"))
    metrics = read_metrics(run_dir / METRICS_FILE)
    is_version = _VERSION.match(run_dir.name) is not None
    started = (run_dir / CONFIG_FILE).stat().st_mtime
    if (run_dir / LOG_FILE).is_file():  # the first line is written when the run starts
        started = min(started, (run_dir / LOG_FILE).stat().st_mtime)
    return {
        "name": result.get("name") or (run_dir.parent.name if is_version else run_dir.name),
        "version": run_dir.name if is_version else "",
        "model": result.get("model") or model.get("name") or ("spec" if model.get("spec") else None),
        "dataset": result.get("dataset") or data.get("dataset"),
        "engine": result.get("engine") or train.get("engine", "torch"),
        "status": result.get("status", "missing"),
        "epochs": result.get("epochs_run", metrics[-1]["epoch"] if metrics else 0),
        "best_val_acc": result.get("best_val_acc"),
        "test_acc": result.get("test_acc"),
        "s_per_epoch": result.get("s_per_epoch"),
        "date": datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M"),
        "path": str(run_dir.relative_to(root) if root is not None and run_dir != Path(root) else run_dir),
    }


def _matches_filter(row: dict, key: str, wanted: str) -> bool:
    value = row.get(key)
    if value is None:
        return wanted in ("", "none", "None")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value) == wanted


def list_runs(root: str | os.PathLike = "runs", sort: str | None = None,
              filters=()) -> list[dict]:
    """One row (dict of `LIST_COLUMNS`) per run folder under `root`.

    filters: `"key=value"` strings, all of which must hold (numbers compare as numbers).
    sort: a column; `-column` sorts descending. Missing values sort last.
    """
    rows = [run_row(path, root) for path in find_runs(root)]
    for item in filters or ():
        key, eq, wanted = str(item).partition("=")
        if not eq or key not in LIST_COLUMNS:
            raise ConfigError(f"A filter must be 'key=value' with key one of {', '.join(LIST_COLUMNS)}; "
                              f"got {item!r}.{did_you_mean(key, LIST_COLUMNS)}")
        rows = [r for r in rows if _matches_filter(r, key, wanted)]
    if sort:
        key = sort.lstrip("-")
        if key not in LIST_COLUMNS:
            raise ConfigError(f"Cannot sort runs by {sort!r}; columns: {', '.join(LIST_COLUMNS)}."
                              f"{did_you_mean(key, LIST_COLUMNS)}")
        present = [r for r in rows if r.get(key) is not None]
        present.sort(key=lambda r: (isinstance(r[key], str), r[key]), reverse=sort.startswith("-"))
        rows = present + [r for r in rows if r.get(key) is None]
    return rows
