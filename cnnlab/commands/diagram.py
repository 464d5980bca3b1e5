"""`cnnlab diagram`: the model drawn as a block diagram (png, svg or pdf)."""

from __future__ import annotations

from cnnlab.commands.common import model_arguments


def register(subparsers) -> None:
    diagram = subparsers.add_parser("diagram", help="draw the model as a block diagram (png, svg or pdf)")
    model_arguments(diagram)
    diagram.add_argument("-o", "--output", required=True, metavar="FILE", help="model.png, model.svg or model.pdf")
    diagram.add_argument("--horizontal", action="store_true", help="lay the layers out left to right")
    diagram.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.inspect import diagram

    orientation = "horizontal" if args.horizontal else "vertical"
    diagram(args.model, args.input, path=args.output, orientation=orientation,
            engine=args.engine, num_classes=args.classes)
    print(f"wrote {args.output}")
    return 0
