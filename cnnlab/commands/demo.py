"""`cnnlab demo`: train a small CNN on the embedded digits in seconds."""

from __future__ import annotations

import argparse

from cnnlab.commands.train import exit_code, print_result

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
    d.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.api import train
    from cnnlab.config import load_config

    overrides = {"data.dataset": args.dataset, "train.out": args.out}
    if args.data_dir:
        overrides["data.data_dir"] = args.data_dir
    if args.epochs:
        overrides["train.epochs"] = args.epochs
    if args.device:
        overrides["train.device"] = args.device
    if args.dataset in DEMO_THREADS:
        overrides["train.threads"] = DEMO_THREADS[args.dataset]
    result = train(load_config(DEMO_CONFIG, overrides), quiet=args.quiet)
    print_result(result)
    return exit_code(result)
