"""`train(config) -> Run`: data, model, engine, schedule, callbacks and the run folder.

The steps: prepare the data (validation split carved from train), build the model in the
configured engine, create the run folder, fit with the standard callbacks, evaluate the test
set once from the best checkpoint, write result.json and the plots. `resume=RUN_DIR`
rebuilds the same objects from the run's config.yaml and continues from last.pt.
"""

from __future__ import annotations

import math
import platform
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import cnnlab
from cnnlab.config import Config, load_config
from cnnlab.errors import ConfigError, TrainingInterrupted
from cnnlab.training import callbacks as cb
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.checks import check_batches
from cnnlab.training.engines import engine_device, make_engine
from cnnlab.training.loop import evaluate, fit
from cnnlab.training.run import Run, RunLog, checkpoint_path, find_run_dir, new_run_dir, run_name
from cnnlab.training.runtime import compute_threads, sigterm_as_interrupt, tune_allocator
from cnnlab.utils import set_seed, write_json

EVAL_BATCH_SIZE = 512  # evaluation holds no activations for backward, so bigger batches are cheap


@dataclass
class Session:
    """Everything built from a config before the loop starts."""

    config: Config
    prepared: object
    engine: object
    train_loader: object
    val_loader: object
    test_loader: object
    scheduler: object
    params: int
    macs: int
    model_options: dict


def build_session(config: Config) -> Session:
    """Data, model, engine, loaders and scheduler for `config`, seeded for reproducibility."""
    import cnnlab.data as data
    import cnnlab.models as models
    from cnnlab.schedules import build_scheduler

    t = config.train
    tune_allocator()
    set_seed(t.seed)
    prepared = data.prepare(config.data, t.seed)
    device = engine_device(t.engine, t.device)
    ref = config.model.spec if config.model.spec is not None else config.model.name
    options = _resolved_options(config)
    node = models.resolve(ref, prepared.input_shape, prepared.num_classes, **options)
    check_batches(node, t.batch_size, len(prepared.train))
    set_seed(t.seed)  # the initial weights depend only on the seed
    model = models.build(ref, prepared.input_shape, prepared.num_classes, engine=t.engine, **options)
    engine = make_engine(t.engine, model, t, config.optim, device)
    loader_args = dict(mean=prepared.mean, std=prepared.std, device=engine.device,
                       channels_last=getattr(engine, "channels_last", False))
    # drop a ragged last batch (BatchNorm cannot train on one sample) unless it is the only one
    train_loader = data.BatchLoader(prepared.train, t.batch_size, shuffle=True,
                                    augment=config.data.augment, seed=t.seed,
                                    drop_last=len(prepared.train) > t.batch_size, **loader_args)
    eval_bs = max(t.batch_size, EVAL_BATCH_SIZE)
    val_loader = (data.BatchLoader(prepared.val, eval_bs, shuffle=False, **loader_args)
                  if len(prepared.val) else None)
    test_loader = data.BatchLoader(prepared.test, eval_bs, shuffle=False, **loader_args)
    scheduler = build_scheduler(engine.optimizer, config.schedule, len(train_loader), t.epochs)
    return Session(config, prepared, engine, train_loader, val_loader, test_loader, scheduler,
                   params=int(node.total_params()), macs=int(node.total_macs()),
                   model_options=options)


def _resolved_options(config: Config) -> dict:
    """The zoo entry's option defaults overlaid with the config's options."""
    import cnnlab.models as models

    if config.model.spec is not None:
        return {}
    return {**dict(models.get(config.model.name).options), **dict(config.model.options)}


def train(config=None, out=None, name=None, resume=None, *, callbacks=(), quiet: bool = False,
          plots: bool = True) -> Run:
    """Train a model and return its `Run`.

    config: a Config, a dict in the YAML form, a YAML path, or None for the defaults.
    out, name: override `train.out` / `train.name`; the run goes to `<out>/<name>/v<N>/`.
    resume: a run folder to continue from its last.pt (config, out and name are then taken
        from the run). callbacks: extra `Callback`s, run after the standard ones.
    quiet: no progress output (log.txt is still written). plots: write curves/confusion/
    predictions PNGs at the end.
    """
    if resume is not None:
        if config is not None or out is not None or name is not None:
            raise ConfigError(
                "train(resume=...) continues a run with its own config.yaml, folder and name; do "
                f"not pass config, out or name as well (got config={type(config).__name__}, "
                f"out={out!r}, name={name!r})."
            )
        run_dir = find_run_dir(resume)
        config = Run.load(run_dir).config
    else:
        config = config if isinstance(config, Config) else load_config(config)
        updates = {k: str(v) for k, v in (("train.out", out), ("train.name", name)) if v is not None}
        config = config.replace(**updates) if updates else config
    with compute_threads(config.train.threads):
        if resume is not None:
            return _resume(run_dir, callbacks, quiet, plots)
        session = build_session(config)
        run_dir = new_run_dir(config.train.out, run_name(config))
        return _execute(session, run_dir, None, callbacks, quiet, plots)


def _resume(run_dir: Path, callbacks, quiet, plots) -> Run:
    previous = Run.load(run_dir)
    if previous.status in ("completed", "diverged"):
        raise ConfigError(
            f"Run '{run_dir}' already finished with status '{previous.status}'; there is nothing "
            "to resume. Start a new run instead (cnnlab train <run>/config.yaml)."
        )
    last = checkpoint_path(run_dir, "last")
    if last is None:
        raise ConfigError(f"Run '{run_dir}' has no last.pt/last.npz to resume from.")
    checkpoint = load_checkpoint(last)
    session = build_session(previous.config)
    return _execute(session, run_dir, checkpoint, callbacks, quiet, plots)


def _standard_callbacks(session: Session, run_dir: Path, log: RunLog, quiet: bool) -> list:
    """Timer first (others read its numbers), last.pt last (it saves everyone's final state)."""
    t = session.config.train
    suffix = session.engine.checkpoint_suffix
    extra = {"config": session.config.to_dict()}
    best = cb.BestCheckpoint(run_dir / f"best{suffix}", monitor=t.monitor, extra=extra)
    last = cb.LastCheckpoint(run_dir / f"last{suffix}", extra=extra)
    callbacks = [cb.Timer(), cb.NaNGuard(), best]
    if t.patience is not None:
        callbacks.append(cb.EarlyStopping(t.monitor, t.patience, restore_best=False))
    callbacks += [cb.CSVLogger(run_dir / "metrics.csv"), cb.LogLines(log.write)]
    if not quiet:
        callbacks.append(cb.progress_callback())
    callbacks.append(last)
    best.callbacks = last.callbacks = callbacks
    return callbacks


def _static_result(session: Session, run_dir: Path) -> dict:
    import torch

    c, p = session.config, session.prepared
    return {
        "status": "running",
        "name": run_dir.parent.name,
        "model": c.model.name,
        "model_options": session.model_options,
        "dataset": c.data.dataset,
        "engine": c.train.engine,
        "device": session.engine.device,
        "params": session.params,
        "macs": session.macs,
        "input_shape": list(p.input_shape),
        "num_classes": p.num_classes,
        "classes": list(p.classes),
        "mean": list(p.mean),
        "std": list(p.std),
        "train_samples": len(p.train),
        "val_samples": len(p.val),
        "test_samples": len(p.test),
        "monitor": c.train.monitor,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "torch": torch.__version__, "cnnlab": cnnlab.__version__},
    }


def _restore(session: Session, checkpoint: dict, callbacks: list, run_dir: Path) -> tuple[int, list]:
    """Load a last checkpoint into the session and callbacks; return (epoch, metrics so far)."""
    session.engine.load_state_dict(checkpoint)
    if checkpoint.get("scheduler") is not None:
        session.scheduler.load_state_dict(checkpoint["scheduler"])
    states = checkpoint.get("callbacks") or {}
    for callback in callbacks:
        if callback.key and callback.key in states:
            callback.load_state_dict(states[callback.key])
    cb.set_global_rng_state(checkpoint.get("global_rng"))
    epoch = int(checkpoint["epoch"])
    history = [row for row in cb.read_metrics_csv(run_dir / "metrics.csv") if row["epoch"] <= epoch]
    return epoch, history


def _execute(session: Session, run_dir: Path, checkpoint, extra_callbacks, quiet, plots) -> Run:
    config = session.config
    log = RunLog(run_dir / "log.txt")
    config.save(run_dir / "config.yaml")
    result = _static_result(session, run_dir)
    callbacks = _standard_callbacks(session, run_dir, log, quiet)
    callbacks[-1:-1] = list(extra_callbacks)  # user callbacks run before last.pt is written
    initial_epoch, history = 0, []
    if checkpoint is not None:
        initial_epoch, history = _restore(session, checkpoint, callbacks, run_dir)
        log.write(f"resumed from epoch {initial_epoch} ({run_dir})")
    else:
        log.write(f"run {run_dir}: {config.model.name} on {config.data.dataset}, "
                  f"{config.train.engine} engine on {session.engine.device}, "
                  f"{result['params']:,} params")
    write_json(run_dir / "result.json", result)
    timer = next(c for c in callbacks if isinstance(c, cb.Timer))
    try:
        with sigterm_as_interrupt():
            state = fit(session.engine, session.train_loader, session.val_loader,
                        config.train.epochs, session.scheduler, callbacks,
                        initial_epoch=initial_epoch, history=history)
            result.update(_final_metrics(session, run_dir, state, timer))
    except KeyboardInterrupt:
        done = _epochs_done(run_dir)
        result.update(status="interrupted", epochs_run=done, **timer.summary())
        write_json(run_dir / "result.json", result)
        message = (f"Training stopped by Ctrl-C or SIGTERM after epoch {done} of "
                   f"{config.train.epochs}; last checkpoint and metrics.csv are saved in "
                   f"'{run_dir}'. Resume with: cnnlab train --resume {run_dir}")
        log.write(message)
        raise TrainingInterrupted(message) from None
    except Exception as err:
        result.update(status="failed", error=f"{type(err).__name__}: {err}",
                      epochs_run=_epochs_done(run_dir), **timer.summary())
        write_json(run_dir / "result.json", result)
        log.write("failed: " + "".join(traceback.format_exception(err)).rstrip())
        raise
    write_json(run_dir / "result.json", result)
    log.write(_summary_line(result))
    if plots:
        _write_plots(run_dir, log)
    return Run.load(run_dir)


def _epochs_done(run_dir: Path) -> int:
    rows = cb.read_metrics_csv(run_dir / "metrics.csv")
    return rows[-1]["epoch"] if rows else 0


def _final_metrics(session: Session, run_dir: Path, state, timer) -> dict:
    """Test loss/accuracy from the best checkpoint (evaluated once), plus the run's summary."""
    best_path = checkpoint_path(run_dir, "best")
    test_loss = test_acc = None
    best = {}
    if best_path is not None:
        payload = load_checkpoint(best_path)
        session.engine.load_state_dict(payload)
        best = payload.get("best") or {}
        test_loss, test_acc = evaluate(session.engine, session.test_loader)
    best_epoch = best.get("epoch")
    best_row = next((r for r in state.history if r["epoch"] == best_epoch), {})
    return {
        "status": state.status,
        "stop_reason": state.stop_reason,
        "test_loss": _finite_or_none(test_loss),
        "test_acc": _finite_or_none(test_acc),
        "best_epoch": best_epoch,
        "best_value": best.get("value"),
        "best_val_acc": _finite_or_none(best_row.get("val_acc")),
        "epochs_run": state.history[-1]["epoch"] if state.history else 0,
        **timer.summary(),
    }


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) else None


def _summary_line(result: dict) -> str:
    acc = result.get("test_acc")
    acc_text = f"test_acc {100 * acc:.2f}%" if acc is not None else "no test accuracy"
    return (f"{result['status']}: {result['epochs_run']} epoch(s), {acc_text} "
            f"(best epoch {result.get('best_epoch')}), {result.get('s_per_epoch') or 0:.2f} s/epoch")


def _write_plots(run_dir: Path, log: RunLog) -> None:
    """The inspection plots; a failure is a warning in log.txt, never a lost run."""
    try:
        from cnnlab.inspect import plot_run
    except ImportError as err:
        log.write(f"warning: plots skipped, cnnlab.inspect.plot_run unavailable ({err})")
        return
    try:
        plot_run(run_dir)
    except Exception as err:  # noqa: BLE001 - plots must never lose a finished run
        log.write(f"warning: plots failed: {type(err).__name__}: {err}")
        print(f"warning: plots failed ({type(err).__name__}: {err}); see {run_dir / 'log.txt'}",
              file=sys.stderr)
