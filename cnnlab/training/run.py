"""`Run`: a run folder read back, with its model, engine and predictions rebuilt from it.

The folder's format (files, versions, model arguments) is `cnnlab.runs`'s; this adds what
needs the typed config, the engines and the checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab import engines, runs
from cnnlab.config import Config
from cnnlab.errors import ConfigError, DataError
from cnnlab.training.checkpoint import checkpoint_fits, load_checkpoint


@dataclass
class Run:
    """A run folder read back: config, metrics, result; models and predictions from checkpoints."""

    path: Path
    config: Config
    metrics: list = field(default_factory=list)
    result: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Run":
        record = runs.read_run(runs.find_run_dir(path))
        return cls(path=record.path, config=Config.from_dict(record.config),
                   metrics=record.metrics, result=record.result)

    @staticmethod
    def list(root: str | os.PathLike = "runs", sort: str | None = None, filters=()):
        """One row per run folder under `root` (see `cnnlab.runs.list_runs`): a pandas DataFrame
        when pandas is installed, else a list of dicts."""
        rows = runs.list_runs(root, sort=sort, filters=filters)
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows, columns=list(runs.LIST_COLUMNS))

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

    def model_args(self) -> runs.ModelArgs:
        """What the run's model was built from (model.json; rebuilt for older runs)."""
        return runs.read_model_args(self.path)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model_args().input_shape)

    @property
    def num_classes(self) -> int:
        return self.model_args().num_classes

    def checkpoint(self, which: str = "best") -> dict:
        """The checkpoint payload `which` ('best' or 'last')."""
        path = runs.checkpoint_path(self.path, which)
        if path is None:
            suffixes = " or ".join(f"{which}{s}" for s in engines.checkpoint_suffixes())
            raise ConfigError(
                f"Run '{self.path}' has no '{which}' checkpoint ({suffixes}); checkpoints "
                f"present: {runs.checkpoint_files(self.path) or 'none'}."
            )
        return load_checkpoint(path)

    def _build_model(self):
        import cnnlab.models as models

        args = self.model_args()
        return models.build(args.ref, args.input_shape, args.num_classes, engine=args.engine,
                            **args.options)

    def _fits(self, which: str):
        """Loading the `which` checkpoint inside: a model that does not fit it is a ModelError
        naming the file the model was built from and the checkpoint."""
        model_file = self.path / runs.MODEL_FILE
        return checkpoint_fits(runs.checkpoint_path(self.path, which),
                               model_file if model_file.is_file() else self.path / runs.CONFIG_FILE)

    def model(self, which: str = "best"):
        """The model in its engine with the `which` checkpoint's weights, in eval mode."""
        model = self._build_model()
        state = self.checkpoint(which)["model"]
        with self._fits(which):
            model.load_state_dict(state)
        model.eval()
        return model

    def engine(self, which: str = "best", device: str | None = None):
        """An engine (the run's kind) holding the `which` checkpoint, in eval mode."""
        import torch

        cfg = self.config
        spec = engines.get(self.model_args().engine)
        engine = spec.make_adapter(self._build_model(), cfg.train, cfg.optim,
                                   spec.resolve_device(device or cfg.train.device))
        checkpoint = self.checkpoint(which)
        # fork_rng: loading the saved RNG must not touch the caller's
        with torch.random.fork_rng(devices=[]), self._fits(which):
            engine.load_state_dict(checkpoint)
        engine.eval()
        return engine

    def predict(self, images_u8, which: str = "best", batch_size: int = 256,
                device: str | None = None) -> np.ndarray:
        """Class probabilities (N, K) for uint8 images (N, C, H, W), normalised as in training
        (and averaged over the run's test-time augmentation views, `eval.tta`)."""
        from cnnlab.data import ArrayDataset, BatchLoader
        from cnnlab.data.augment import tta_views

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
        tta = self.config.eval.tta  # predictions agree with the test accuracy the run reports
        chunks = [_softmax(np.mean([engine.predict(v) for v in tta_views(x, tta)], axis=0))
                  for x, _ in loader]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes), np.float32)

    def test_data(self):
        """The run's test split (an ArrayDataset), reloaded with the run's data config (and
        its `data.test_limit` subset, the one the run was evaluated on)."""
        from cnnlab.data import load, stratified_subset

        data = self.config.data
        test = load(data.dataset, data.data_dir, download=data.download)["test"]
        if data.test_limit is not None:
            test = test.subset(stratified_subset(test.labels, data.test_limit, self.config.train.seed))
        return test


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
