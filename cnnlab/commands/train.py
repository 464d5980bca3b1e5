"""`cnnlab train`: a thin layer over `cnnlab.train` (training, then the run's figures)."""

from __future__ import annotations

import argparse
import sys

from cnnlab import engines

# flag dest -> config key it is a shorthand for
FLAG_KEYS = {
    "model": "model.name",
    "dataset": "data.dataset",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "lr": "optim.lr",
    "engine": "train.engine",
    "data_dir": "data.data_dir",
    "out": "train.out",
    "name": "train.name",
    "device": "train.device",
}

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train a model from a YAML config and/or flags (flags are shorthands for "
                    "config keys; --set overrides any key). Writes <out>/<name>/v<N>/.",
    )
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="training config (YAML)")
    p.add_argument("--model", help="zoo model name (model.name)")
    p.add_argument("--dataset", help="dataset name (data.dataset)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--lr", type=float, help="optim.lr")
    p.add_argument("--engine", choices=engines.names(), help="train.engine")
    p.add_argument("--data-dir", help="directory with the dataset files (data.data_dir)")
    p.add_argument("--out", help="directory for run folders (train.out, default runs)")
    p.add_argument("--name", help="run name (train.name)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.name=adam (repeatable)")
    p.add_argument("--logger", action="append", default=[], metavar="NAME",
                   help="also log to tensorboard or mlflow (train.loggers; repeatable)")
    p.add_argument("--profile", help="a profile of the config file, e.g. gpu")
    p.add_argument("--layers", metavar="FILE.py",
                   help="train with your own NumPy layer classes from this file in place of "
                        "cnnlab's (model.layers; scratch engine; see `cnnlab check --impl`)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots at the end")
    p.set_defaults(func=run)



def _flag_overrides(args: argparse.Namespace) -> dict:
    return {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()
            if getattr(args, dest, None) is not None}


def run(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config, parse_overrides
    from cnnlab.errors import ConfigError
    from cnnlab.api import train

    if args.resume:
        extras = [f"--{dest.replace('_', '-')}" for dest in FLAG_KEYS
                  if getattr(args, dest, None) is not None and dest != "data_dir"]
        extras += (["CONFIG.yaml"] if args.config else []) + (["--set"] if args.set else [])
        extras += ["--logger"] if args.logger else []
        if extras:
            raise ConfigError(
                f"--resume {args.resume} continues the run with its own config.yaml; drop "
                f"{', '.join(extras)} (--data-dir is accepted, for data that moved, and "
                "--layers, which must name the run's own layers file)."
            )
        result = train(resume=args.resume, quiet=args.quiet, plots=not args.no_plots,
                       data_dir=args.data_dir, layers=args.layers)
    else:
        overrides = {**_flag_overrides(args), **parse_overrides(args.set)}
        if args.layers:
            overrides["model.layers"] = args.layers
        if args.logger:
            overrides["train.loggers"] = list(dict.fromkeys(args.logger))
        config = load_config(args.config, overrides, profile=args.profile)
        result = train(config, quiet=args.quiet, plots=not args.no_plots)
    print_result(result)
    return exit_code(result)


def exit_code(run) -> int:
    """0 for a completed run; a diverged run (NaN/inf loss) is an error: its reason on stderr, 3."""
    if run.result.get("status") == "completed":
        return 0
    reason = run.result.get("stop_reason") or "the loss became NaN or infinite"
    print(f"error: training diverged: {reason}. Metrics up to the divergence are kept in "
          f"{run.path}.", file=sys.stderr)
    return 3


def print_result(run) -> None:
    from cnnlab.training.trainer import early_stop_text

    r = run.result
    acc = r.get("test_acc")
    acc_text = f"test accuracy {100 * acc:.2f}%" if acc is not None else "no test accuracy"
    print(f"{r.get('status')}: {r.get('model')} on {r.get('dataset')}, {acc_text} "
          f"(best epoch {r.get('best_epoch')} of {r.get('epochs_run')}, "
          f"{r.get('s_per_epoch') or 0:.2f} s/epoch on {r.get('device')})"
          + (f"; {early}" if (early := early_stop_text(r)) else ""))
    print(f"run folder: {run.path}")
