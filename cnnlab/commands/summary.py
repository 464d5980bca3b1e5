"""`cnnlab summary`: a table of layers, output shapes, params, MACs/FLOPs and memory."""

from __future__ import annotations

from cnnlab.commands.common import model_arguments


def register(subparsers) -> None:
    summary = subparsers.add_parser(
        "summary", help="table of layers, output shapes, params, MACs/FLOPs and memory")
    model_arguments(summary)
    summary.add_argument("--depth", type=int, default=3, help="show nested blocks down to this depth (default 3)")
    summary.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.inspect import summary

    result = summary(args.model, args.input, engine=args.engine, num_classes=args.classes, depth=args.depth)
    print(result, end="")
    return 0
