"""`cnnlab diagram`: the model drawn as a block diagram (png, svg or pdf)."""

from __future__ import annotations

from pathlib import Path

from cnnlab.commands.common import model_arguments


def register(subparsers) -> None:
    diagram = subparsers.add_parser("diagram", help="draw the model as a block diagram (png, svg or pdf)")
    model_arguments(diagram)
    diagram.add_argument("-o", "--output", metavar="FILE",
                         help="model.png, model.svg or model.pdf (default: model.<format> in a run "
                              "folder, else <name>.<format> here)")
    diagram.add_argument("--format", default=None, choices=("png", "svg", "pdf"),
                         help="file format when -o is not given (default png)")
    diagram.add_argument("--horizontal", action="store_true", help="lay the layers out left to right")
    diagram.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.inspect import diagram

    orientation = "horizontal" if args.horizontal else "vertical"
    output = args.output or default_output(args.model, args.format or "png")
    diagram(args.model, args.input, path=output, orientation=orientation,
            engine=args.engine, num_classes=args.classes)
    print(f"wrote {output}")
    return 0


def default_output(model: str, fmt: str) -> str:
    """model.<fmt> inside a run folder; <name>.<fmt> (zoo name or spec file stem) otherwise."""
    from cnnlab import runs

    path = Path(model)
    if path.is_dir() and (runs.is_run_dir(path) or runs.latest_run_dir(path) is not None):
        return str(runs.find_run_dir(path) / f"model.{fmt}")
    return f"{path.stem if path.suffix else model}.{fmt}"
