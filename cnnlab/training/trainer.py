"""`train(config) -> Run`: data, model, engine, schedule, callbacks and the run folder.

The steps: prepare the data (validation split carved from train), build the model in the
configured engine, create the run folder, fit with the standard callbacks, evaluate the test
set once from the best checkpoint, write result.json. `resume=RUN_DIR` rebuilds the same
objects from the run's config.yaml and continues from last.pt. Drawing the run's plots is not
training's job: `cnnlab.train` (`cnnlab.api`) adds them.
"""

from __future__ import annotations

import contextlib
import math
import platform
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab import engines, runs
from cnnlab.config import Config, load_config
from cnnlab.engines import student_layers
from cnnlab.engines.optim import build_scheduler
from cnnlab.errors import CnnlabError, ConfigError, OutputError, TrainingInterrupted
from cnnlab.runs import RunLog, checkpoint_path
from cnnlab.training import callbacks as cb
from cnnlab.training.checkpoint import checkpoint_fits, load_checkpoint
from cnnlab.training.loggers import finish_loggers, make_loggers
from cnnlab.training.checks import check_batches
from cnnlab.training.loop import ClassCounts, evaluate, fit
from cnnlab.training.run import Run
from cnnlab.training.runtime import compute_threads, set_seed, sigterm_as_interrupt, tune_allocator
from cnnlab.training.whiten import whiten_first_conv
from cnnlab.version import __version__

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
    model_args: runs.ModelArgs
    student_layers: dict | None = None  # {"file", "sha256", "ops"} when model.layers is set


def build_session(config: Config) -> Session:
    """Data, model, engine, loaders and scheduler for `config`, seeded for reproducibility."""
    import cnnlab.data as data
    import cnnlab.models as models

    t = config.train
    tune_allocator()
    set_seed(t.seed)
    prepared = data.prepare(config.data, t.seed)
    engine_spec = engines.get(t.engine)
    device = engine_spec.resolve_device(t.device)
    model_args = runs.ModelArgs(ref=config.model.ref, options=config.model.resolved_options(),
                                input_shape=tuple(prepared.input_shape),
                                num_classes=prepared.num_classes, engine=t.engine,
                                label=config.model.name)
    node = models.resolve(model_args.ref, model_args.input_shape, model_args.num_classes,
                          **model_args.options)
    check_batches(node, t.batch_size, len(prepared.train))
    set_seed(t.seed)  # the initial weights depend only on the seed
    layers = _student_layers(config)
    model = (engine_spec.build_model(node) if layers is None
             else student_layers.build_model(node, layers))
    if config.model.whiten:
        whiten_first_conv(model, node, prepared.train.images, prepared.mean, prepared.std, t.seed)
    engine = (engine_spec.make_adapter(model, t, config.optim, device) if layers is None
              else student_layers.make_adapter(model, layers, t, config.optim, device))
    loader_args = dict(mean=prepared.mean, std=prepared.std, device=engine.device,
                       channels_last=getattr(engine, "channels_last", False))
    # drop a ragged last batch (BatchNorm cannot train on one sample) unless it is the only one
    train_loader = data.BatchLoader(prepared.train, t.batch_size, shuffle=True,
                                    augment=config.data.augment, seed=t.seed,
                                    translate=config.data.translate, cutout=config.data.cutout,
                                    drop_last=len(prepared.train) > t.batch_size, **loader_args)
    eval_bs = max(t.batch_size, EVAL_BATCH_SIZE)
    val_loader = (data.BatchLoader(prepared.val, eval_bs, shuffle=False, **loader_args)
                  if len(prepared.val) else None)
    test_loader = data.BatchLoader(prepared.test, eval_bs, shuffle=False, **loader_args)
    scheduler = build_scheduler(engine.optimizer, config.schedule, len(train_loader), t.epochs)
    return Session(config, prepared, engine, train_loader, val_loader, test_loader, scheduler,
                   params=int(node.total_params()), macs=int(node.total_macs()),
                   model_args=model_args,
                   student_layers=None if layers is None else {
                       **layers.describe(), "ops": student_layers.ops_used(node, layers)
                       + (["CrossEntropyLoss"] if "CrossEntropyLoss" in layers.classes else [])})


def _student_layers(config: Config):
    """The student's layers file of `model.layers` (loaded), or None; scratch engine only."""
    if config.model.layers is None:
        return None
    if config.train.engine != "scratch":
        raise ConfigError(
            f"model.layers ({config.model.layers}) swaps your own NumPy layers into the scratch "
            f"engine; this run uses train.engine={config.train.engine}. Add --engine scratch.")
    return student_layers.load_layers(config.model.layers)


def train(config=None, out=None, name=None, resume=None, *, callbacks=(), quiet: bool = False,
          data_dir=None, layers=None, evaluate_test: bool = True) -> Run:
    """Train a model and return its `Run`.

    config: a Config, a dict in the YAML form, a YAML path, or None for the defaults.
    out, name: override `train.out` / `train.name`; the run goes to `<out>/<name>/v<N>/`.
    resume: a run folder to continue from its last.pt (config, out and name are then taken
        from the run); one stopped before its first checkpoint starts again in its folder.
    callbacks: extra `Callback`s, run after the standard ones.
    quiet: no progress output (log.txt is still written).
    data_dir: where the dataset files are (`data.data_dir`); the one override a resume takes,
        for data that moved. A relative data directory is stored absolute in config.yaml, so the
        run can be resumed or reloaded from any working directory.
    layers: a Python file with the student's own layers (`model.layers`, scratch engine); a
        resumed run that trained with such a file needs the same file (same contents) again.
    evaluate_test: False leaves the test set untouched (no test_acc; result.json says
        `test_evaluated: false`), for runs that choose hyperparameters, such as search trials.
    """
    if resume is not None:
        if config is not None or out is not None or name is not None:
            raise ConfigError(
                "train(resume=...) continues a run with its own config.yaml, folder and name; do "
                f"not pass config, out or name as well (got config={type(config).__name__}, "
                f"out={out!r}, name={name!r})."
            )
        run_dir = runs.find_run_dir(resume)
        config = _resumed_layers(run_dir, Run.load(run_dir).config, layers)
    else:
        config = config if isinstance(config, Config) else load_config(config)
        updates = {k: str(v) for k, v in (("train.out", out), ("train.name", name),
                                          ("model.layers", layers)) if v is not None}
        config = config.replace(**updates) if updates else config
    config = _absolute_data_dir(config, data_dir)
    if config.model.layers is not None:  # absolute, like data_dir: resumable from anywhere
        absolute = str(Path(config.model.layers).expanduser().resolve())
        if absolute != config.model.layers:
            config = config.replace(**{"model.layers": absolute})
    with compute_threads(config.train.threads):
        if resume is not None:
            return _resume(run_dir, config, callbacks, quiet, evaluate_test)
        session = build_session(config)
        run_dir = runs.new_run_dir(config.train.out, runs.run_name(config))
        return _execute(session, run_dir, None, callbacks, quiet, evaluate_test)


def _resumed_layers(run_dir: Path, config: Config, layers) -> Config:
    """The run's config with the layers file given for the resume, which must be the file the
    run trained with (same contents; it may have moved)."""
    used = runs.read_result(run_dir).get("student_layers")
    if used is None and config.model.layers is None:
        if layers is not None:
            raise ConfigError(
                f"Run '{run_dir}' trained with cnnlab's own layers; resume it without --layers "
                "(or start a new run with your layers).")
        return config
    recorded = (used or {}).get("file") or config.model.layers
    if layers is None:
        raise ConfigError(
            f"Run '{run_dir}' trained with your layers from {recorded}; resume it with the same "
            f"file: cnnlab train --resume {run_dir} --layers {recorded}")
    path = Path(layers).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"Layers file '{path}' does not exist; run '{run_dir}' trained with "
                          f"{recorded}.")
    digest = student_layers.file_digest(path)
    if used and used.get("sha256") and digest != used["sha256"]:
        raise ConfigError(
            f"{path} is not the layers file run '{run_dir}' trained with: its contents differ "
            f"from {recorded} as it was then (sha256 {used['sha256'][:12]}..., now "
            f"{digest[:12]}...). Resume with that file, or start a new run with this one.")
    return config.replace(**{"model.layers": str(path)})


def _absolute_data_dir(config: Config, data_dir=None) -> Config:
    """`data.data_dir` (or `data_dir` when given) as an absolute path; None stays None."""
    chosen = data_dir if data_dir is not None else config.data.data_dir
    if chosen is None:
        return config
    absolute = str(Path(chosen).expanduser().resolve())
    return config if absolute == config.data.data_dir else config.replace(**{"data.data_dir": absolute})


def _resume(run_dir: Path, config: Config, callbacks, quiet, evaluate_test: bool = True) -> Run:
    previous = Run.load(run_dir)
    if previous.status in ("completed", "diverged"):
        raise ConfigError(
            f"Run '{run_dir}' already finished with status '{previous.status}'; there is nothing "
            "to resume. Start a new run instead (cnnlab train <run>/config.yaml)."
        )
    last = checkpoint_path(run_dir, "last")
    session = build_session(config)
    if last is None:  # stopped (e.g. killed) before its first checkpoint: start again, in place
        return _execute(session, run_dir, None, callbacks, quiet, evaluate_test)
    checkpoint = load_checkpoint(last)
    # before anything is written: an edited config.yaml must not overwrite model.json
    with checkpoint_fits(last, run_dir / runs.CONFIG_FILE):
        session.engine.load_state_dict(checkpoint)
    return _execute(session, run_dir, checkpoint, callbacks, quiet, evaluate_test)


def _standard_callbacks(session: Session, run_dir: Path, log: RunLog, quiet: bool) -> list:
    """Timer first (others read its numbers), last.pt last (it saves everyone's final state)."""
    t = session.config.train
    suffix = engines.get(t.engine).checkpoint_suffix
    extra = {"config": session.config.to_dict()}
    best = cb.BestCheckpoint(run_dir / f"best{suffix}", monitor=t.monitor, extra=extra)
    last = cb.LastCheckpoint(run_dir / f"last{suffix}", extra=extra)
    callbacks = [cb.Timer(), cb.NaNGuard(), best]
    if t.patience is not None:
        callbacks.append(cb.EarlyStopping(t.monitor, t.patience, restore_best=False))
    callbacks += [cb.CSVLogger(run_dir / runs.METRICS_FILE), cb.LogLines(log.write)]
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
        "model_options": session.model_args.options,
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
        # the fast-training options this run used, so a result says how it was obtained
        "features": {"augment": list(c.data.augment), "translate": c.data.translate,
                     "cutout": c.data.cutout, "tta": list(c.eval.tta), "ema": c.train.ema,
                     "whiten": c.model.whiten, "compile": c.train.compile,
                     "amp": c.train.amp, "precision": session.engine.precision,
                     "label_smoothing": c.train.label_smoothing,
                     "bias_lr_scale": c.optim.bias_lr_scale,
                     "bias_weight_decay": c.optim.bias_weight_decay,
                     "lookahead": ({"steps": c.optim.lookahead_steps, "alpha": c.optim.lookahead_alpha}
                                   if c.optim.lookahead_steps else None)},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "torch": torch.__version__, "cnnlab": __version__},
        **({"student_layers": session.student_layers} if session.student_layers else {}),
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
    history = [row for row in runs.read_metrics(run_dir / runs.METRICS_FILE) if row["epoch"] <= epoch]
    return epoch, history


def _execute(session: Session, run_dir: Path, checkpoint, extra_callbacks, quiet, evaluate_test: bool = True) -> Run:
    config = session.config
    log = RunLog(run_dir / runs.LOG_FILE)
    config.save(run_dir / runs.CONFIG_FILE)  # first: it is what makes the folder a run
    runs.write_model_args(run_dir, session.model_args)
    previous = runs.read_result(run_dir).get("loggers") if checkpoint is not None else None
    result = _static_result(session, run_dir)
    callbacks = _standard_callbacks(session, run_dir, log, quiet)
    trackers = make_loggers(config, run_dir, previous, warn=log.write)  # train.loggers
    callbacks[-1:-1] = trackers + list(extra_callbacks)  # these run before last.pt is written
    initial_epoch, history = 0, []
    if checkpoint is not None:
        initial_epoch, history = _restore(session, checkpoint, callbacks, run_dir)
        log.write(f"resumed from epoch {initial_epoch} ({run_dir})")
    else:
        log.write(f"run {run_dir}: {config.model.name} on {config.data.dataset}, "
                  f"{config.train.engine} engine on {session.engine.device}, "
                  f"{result['params']:,} params")
    runs.write_result(run_dir, result)
    timer = next(c for c in callbacks if isinstance(c, cb.Timer))
    try:
        with sigterm_as_interrupt():
            state = fit(session.engine, session.train_loader, session.val_loader,
                        config.train.epochs, session.scheduler, callbacks,
                        initial_epoch=initial_epoch, history=history, tta=config.eval.tta)
            result.update(_final_metrics(session, run_dir, state, timer, evaluate_test))
    except KeyboardInterrupt:
        done = _epochs_done(run_dir)
        result.update(status="interrupted", epochs_run=done, **timer.summary())
        finish_loggers(trackers, result)
        runs.write_result(run_dir, result)
        message = (f"Training stopped by Ctrl-C or SIGTERM after epoch {done} of "
                   f"{config.train.epochs}; last checkpoint and metrics.csv are saved in "
                   f"'{run_dir}'. Resume with: cnnlab train --resume {run_dir}")
        log.write(message)
        raise TrainingInterrupted(message) from None
    except OutputError as err:  # disk full, read-only, ...: the saved state is whole, so resumable
        done = _epochs_done(run_dir)
        result.update(status="interrupted", error=str(err), epochs_run=done, **timer.summary())
        message = (f"{err} Training stopped after epoch {done} of {config.train.epochs}; the "
                   f"files in '{run_dir}' are complete. Resume with: cnnlab train --resume {run_dir}")
        for record in (lambda: finish_loggers(trackers, result), lambda: runs.write_result(run_dir, result),
                       lambda: log.write(message)):
            with contextlib.suppress(CnnlabError, OSError):  # the same disk may refuse these too
                record()
        raise OutputError(message, target=err.target, reason=err.reason) from err
    except Exception as err:
        result.update(status="failed", error=f"{type(err).__name__}: {err}",
                      epochs_run=_epochs_done(run_dir), **timer.summary())
        finish_loggers(trackers, result)
        runs.write_result(run_dir, result)
        log.write("failed: " + "".join(traceback.format_exception(err)).rstrip())
        raise
    runs.write_result(run_dir, result)
    log.write(_summary_line(result))
    if trackers:  # after result.json and log.txt are final: they go to MLflow as artifacts
        finish_loggers(trackers, result)
        runs.write_result(run_dir, result)
    return Run.load(run_dir)


def _epochs_done(run_dir: Path) -> int:
    rows = runs.read_metrics(run_dir / runs.METRICS_FILE)
    return rows[-1]["epoch"] if rows else 0


def _final_metrics(session: Session, run_dir: Path, state, timer, evaluate_test: bool = True) -> dict:
    """Test loss/accuracy from the best checkpoint (evaluated once, unless `evaluate_test` is
    False), plus the run's summary."""
    best_path = checkpoint_path(run_dir, "best")
    test_loss = test_acc = None
    best, per_class = {}, None
    if best_path is not None and evaluate_test:
        payload = load_checkpoint(best_path)
        session.engine.load_state_dict(payload)
        best = payload.get("best") or {}
        counts = ClassCounts(session.prepared.classes)
        test_loss, test_acc = evaluate(session.engine, session.test_loader, session.config.eval.tta,
                                       class_counts=counts)
        per_class = counts.accuracy()
    elif best_path is not None:
        best = load_checkpoint(best_path).get("best") or {}
    best_epoch = best.get("epoch")
    best_row = next((r for r in state.history if r["epoch"] == best_epoch), {})
    return {
        "status": state.status,
        "stop_reason": state.stop_reason,
        "test_loss": _finite_or_none(test_loss),
        "test_acc": _finite_or_none(test_acc),
        "per_class_acc": per_class,
        "best_epoch": best_epoch,
        "best_value": best.get("value"),
        "best_val_acc": _finite_or_none(best_row.get("val_acc")),
        "epochs_run": state.history[-1]["epoch"] if state.history else 0,
        "test_evaluated": bool(evaluate_test and best_path is not None),
        **timer.summary(),
    }


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) else None


def _summary_line(result: dict) -> str:
    acc = result.get("test_acc")
    acc_text = f"test_acc {100 * acc:.2f}%" if acc is not None else "no test accuracy"
    line = (f"{result['status']}: {result['epochs_run']} epoch(s), {acc_text} "
            f"(best epoch {result.get('best_epoch')}), {result.get('s_per_epoch') or 0:.2f} s/epoch")
    return line + (f"; {early}" if (early := early_stop_text(result)) else "")


def early_stop_text(result: dict) -> str:
    """'early stop: ...' when the run ended early (from result.json's stop_reason), else ''."""
    reason = result.get("stop_reason") or ""
    return reason if result.get("status") == "completed" and reason.startswith("early stop") else ""
