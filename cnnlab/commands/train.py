"""`cnnlab train` and `cnnlab demo`: thin layers over `cnnlab.training.train`."""

from __future__ import annotations

import argparse
import sys

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

# the demo: a small CNN on the embedded 8x8 digits, a few seconds on 2 CPU cores
DEMO_CONFIG = {
    "data": {"dataset": "digits"},
    "model": {"name": "small_cnn"},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
    "schedule": {"name": "onecycle"},
    "train": {"epochs": 8, "batch_size": 64, "name": "demo"},
}
# 8x8 batches are too small to gain from a second thread, and lose a lot when the other core
# is busy (OpenMP threads wait on each other), so the digits demo runs on one
DEMO_THREADS = {"digits": 1}


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
    p.add_argument("--engine", choices=("torch", "scratch"), help="train.engine")
    p.add_argument("--data-dir", help="directory with the dataset files (data.data_dir)")
    p.add_argument("--out", help="directory for run folders (train.out, default runs)")
    p.add_argument("--name", help="run name (train.name)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.name=adam (repeatable)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last.pt")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots at the end")
    p.set_defaults(func=run)

    d = subparsers.add_parser(
        "demo",
        help="train a small CNN on the embedded digits in seconds",
        description="Train small_cnn on the 8x8 digits bundled with scikit-learn (no download) "
                    "and print the test accuracy and the run folder.",
    )
    d.add_argument("--dataset", default="digits", help="another dataset (default digits)")
    d.add_argument("--data-dir", help="directory with the dataset files")
    d.add_argument("--out", default="runs", help="directory for run folders (default runs)")
    d.add_argument("--epochs", type=int, help="epochs (default 8)")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.set_defaults(func=run_demo)


def _flag_overrides(args: argparse.Namespace) -> dict:
    return {key: getattr(args, dest) for dest, key in FLAG_KEYS.items()
            if getattr(args, dest, None) is not None}


def run(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config, parse_overrides
    from cnnlab.errors import ConfigError
    from cnnlab.training import train

    if args.resume:
        extras = [f"--{dest.replace('_', '-')}" for dest in FLAG_KEYS
                  if getattr(args, dest, None) is not None]
        extras += (["CONFIG.yaml"] if args.config else []) + (["--set"] if args.set else [])
        if extras:
            raise ConfigError(
                f"--resume {args.resume} continues the run with its own config.yaml; drop "
                f"{', '.join(extras)}."
            )
        result = train(resume=args.resume, quiet=args.quiet, plots=not args.no_plots)
    else:
        overrides = {**_flag_overrides(args), **parse_overrides(args.set)}
        config = load_config(args.config, overrides)
        result = train(config, quiet=args.quiet, plots=not args.no_plots)
    _print_result(result)
    return _exit_code(result)


def run_demo(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config
    from cnnlab.training import train

    overrides = {"data.dataset": args.dataset, "train.out": args.out}
    if args.data_dir:
        overrides["data.data_dir"] = args.data_dir
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    if args.dataset in DEMO_THREADS:
        overrides["train.threads"] = DEMO_THREADS[args.dataset]
    result = train(load_config(DEMO_CONFIG, overrides), quiet=args.quiet)
    _print_result(result)
    return _exit_code(result)


def _exit_code(run) -> int:
    """0 for a completed run; a diverged run (NaN/inf loss) is an error: its reason on stderr, 3."""
    if run.result.get("status") == "completed":
        return 0
    reason = run.result.get("stop_reason") or "the loss became NaN or infinite"
    print(f"error: training diverged: {reason}. Metrics up to the divergence are kept in "
          f"{run.path}.", file=sys.stderr)
    return 3


def _print_result(run) -> None:
    r = run.result
    acc = r.get("test_acc")
    acc_text = f"test accuracy {100 * acc:.2f}%" if acc is not None else "no test accuracy"
    print(f"{r.get('status')}: {r.get('model')} on {r.get('dataset')}, {acc_text} "
          f"(best epoch {r.get('best_epoch')} of {r.get('epochs_run')}, "
          f"{r.get('s_per_epoch') or 0:.2f} s/epoch on {r.get('device')})")
    print(f"run folder: {run.path}")
