"""Run folders `<out>/<name>/v<N>/` and the `Run` object that reads one back.

A run folder holds `config.yaml`, `metrics.csv`, `best.*` / `last.*` checkpoints,
`result.json`, `log.txt` and plots; see docs/ARCHITECTURE.md. Everything is written
atomically, so a reader sees either the previous version of a file or the new one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.config import Config, load_config
from cnnlab.errors import ConfigError, DataError
from cnnlab.training.callbacks import read_metrics_csv
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.utils import atomic_write_text, read_json

CHECKPOINT_SUFFIXES = (".pt", ".npz")
_VERSION = re.compile(r"^v(\d+)$")


def run_name(config: Config) -> str:
    """`train.name`, or `<model>-<dataset>` made safe for a folder name."""
    if config.train.name:
        return config.train.name
    dataset = config.data.dataset
    if dataset.startswith("folder:"):
        dataset = "folder-" + Path(dataset[len("folder:"):].rstrip("/\\")).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{config.model.name}-{dataset}")


def _versions(parent: Path) -> list[int]:
    if not parent.is_dir():
        return []
    return sorted(int(m.group(1)) for p in parent.iterdir() if (m := _VERSION.match(p.name)))


def new_run_dir(out: str | os.PathLike, name: str) -> Path:
    """Create and return the next free `<out>/<name>/v<N>` (safe against parallel runs)."""
    parent = Path(out) / name
    parent.mkdir(parents=True, exist_ok=True)
    number = (_versions(parent) or [0])[-1] + 1
    while True:
        path = parent / f"v{number}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


def find_run_dir(path: str | os.PathLike) -> Path:
    """A run folder from its path, or from `<out>/<name>` (its latest version)."""
    path = Path(path)
    if (path / "config.yaml").is_file():
        return path
    versions = _versions(path)
    if versions:
        latest = path / f"v{versions[-1]}"
        if (latest / "config.yaml").is_file():
            return latest
    raise ConfigError(
        f"'{path}' is not a run folder: it has no config.yaml"
        + (" and no v<N> versions." if path.is_dir() else " (the folder does not exist).")
        + " Give a path like runs/<name>/v1 as written by `cnnlab train`."
    )


def checkpoint_path(run_dir: Path, which: str) -> Path | None:
    """`<run_dir>/<which>.pt` or `.npz`, whichever exists."""
    for suffix in CHECKPOINT_SUFFIXES:
        candidate = run_dir / f"{which}{suffix}"
        if candidate.is_file():
            return candidate
    return None


class RunLog:
    """log.txt: lines kept in memory and the whole file rewritten atomically on each write."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.is_file() else []

    def write(self, line: str) -> None:
        self.lines.extend(str(line).splitlines() or [""])
        atomic_write_text(self.path, "\n".join(self.lines) + "\n")


@dataclass
class Run:
    """A run folder read back: config, metrics, result; models and predictions from checkpoints."""

    path: Path
    config: Config
    metrics: list = field(default_factory=list)
    result: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Run":
        run_dir = find_run_dir(path)
        result_path = run_dir / "result.json"
        return cls(
            path=run_dir,
            config=load_config(run_dir / "config.yaml"),
            metrics=read_metrics_csv(run_dir / "metrics.csv"),
            result=read_json(result_path) if result_path.is_file() else {},
        )

    def __repr__(self) -> str:
        r = self.result
        return (f"Run('{self.path}', status={r.get('status')!r}, epochs={len(self.metrics)}, "
                f"test_acc={r.get('test_acc')!r})")

    @property
    def status(self) -> str | None:
        return self.result.get("status")

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.result.get("classes") or ())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self._result_field("input_shape"))

    @property
    def num_classes(self) -> int:
        return int(self._result_field("num_classes"))

    def _result_field(self, key: str):
        if key not in self.result:
            raise ConfigError(
                f"Run '{self.path}' has no '{key}' in result.json (the file is missing or from an "
                "incomplete run), so its model cannot be rebuilt."
            )
        return self.result[key]

    def checkpoint(self, which: str = "best") -> dict:
        """The checkpoint payload `which` ('best' or 'last')."""
        path = checkpoint_path(self.path, which)
        if path is None:
            raise ConfigError(
                f"Run '{self.path}' has no '{which}' checkpoint ({which}.pt or {which}.npz); "
                "checkpoints present: "
                f"{sorted(p.name for p in self.path.glob('*') if p.suffix in CHECKPOINT_SUFFIXES) or 'none'}."
            )
        return load_checkpoint(path)

    def _build_model(self):
        import cnnlab.models as models

        cfg = self.config
        ref = cfg.model.spec if cfg.model.spec is not None else cfg.model.name
        return models.build(ref, self.input_shape, self.num_classes, engine=cfg.train.engine,
                            **dict(cfg.model.options))

    def model(self, which: str = "best"):
        """The model in its engine with the `which` checkpoint's weights, in eval mode."""
        model = self._build_model()
        model.load_state_dict(self.checkpoint(which)["model"])
        model.eval()
        return model

    def engine(self, which: str = "best", device: str | None = None):
        """An engine (the run's kind) holding the `which` checkpoint, in eval mode."""
        import torch

        from cnnlab.training.engines import engine_device, make_engine

        cfg = self.config
        device = engine_device(cfg.train.engine, device or cfg.train.device)
        engine = make_engine(cfg.train.engine, self._build_model(), cfg.train, cfg.optim, device)
        with torch.random.fork_rng(devices=[]):  # loading the saved RNG must not touch the caller's
            engine.load_state_dict(self.checkpoint(which))
        engine.eval()
        return engine

    def predict(self, images_u8, which: str = "best", batch_size: int = 256,
                device: str | None = None) -> np.ndarray:
        """Class probabilities (N, K) for uint8 images (N, C, H, W), normalised as in training."""
        from cnnlab.data import ArrayDataset, BatchLoader

        images = np.asarray(images_u8)
        if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise DataError(
                f"Run.predict needs uint8 images of shape (N, {', '.join(map(str, self.input_shape))}) "
                f"like the run's training data; received {images.dtype} array of shape "
                f"{images.shape}."
            )
        engine = self.engine(which, device=device)
        dataset = ArrayDataset(images, np.zeros(len(images), np.int64), self.classes or ("0",))
        loader = BatchLoader(dataset, batch_size, shuffle=False, mean=self.result["mean"],
                             std=self.result["std"], device=engine.device,
                             channels_last=getattr(engine, "channels_last", False))
        chunks = [_softmax(engine.predict(x)) for x, _ in loader]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes), np.float32)

    def test_data(self):
        """The run's test split (an ArrayDataset), reloaded with the run's data config."""
        from cnnlab.data import load

        data = self.config.data
        return load(data.dataset, data.data_dir, download=data.download)["test"]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
