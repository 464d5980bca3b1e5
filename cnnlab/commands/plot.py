"""`cnnlab plot`: write a run folder's curves, confusion matrix and prediction grid."""

from __future__ import annotations


def register(subparsers) -> None:
    plot = subparsers.add_parser("plot", help="write curves.png, confusion.png, predictions.png (or mistakes.png) into a run folder")
    plot.add_argument("run_dir", metavar="RUN_DIR")
    plot.add_argument("--mistakes", action="store_true",
                      help="grid of the most confident mistakes, written as mistakes.png")
    plot.add_argument("--format", default="png", choices=("png", "svg", "pdf"), help="file format (default png)")
    plot.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.results import plot_run

    for path in plot_run(args.run_dir, mistakes_only=args.mistakes, fmt=args.format):
        print(f"wrote {path}")
    return 0
