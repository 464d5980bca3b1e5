"""`cnnlab summary`, `cnnlab diagram`, `cnnlab plot`, `cnnlab predict`: inspection commands.

Each parses, calls `cnnlab.inspect` and prints; the work happens in the API.
"""

from __future__ import annotations

import sys
import warnings

MODEL_HELP = "a zoo name, a SPEC.yaml file or a run folder"


def _model_arguments(parser) -> None:
    parser.add_argument("model", metavar="NAME|SPEC.yaml|RUN_DIR", help=MODEL_HELP)
    parser.add_argument("--input", metavar="CxHxW", default=None,
                        help="input shape without the batch, e.g. 3x32x32 (default: the model's own)")
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    parser.add_argument("--engine", choices=("torch", "scratch"), default="torch",
                        help="engine to build the model in (default torch)")


def register(subparsers) -> None:
    summary = subparsers.add_parser(
        "summary", help="table of layers, output shapes, params, MACs/FLOPs and memory")
    _model_arguments(summary)
    summary.add_argument("--depth", type=int, default=3, help="show nested blocks down to this depth (default 3)")
    summary.set_defaults(func=run_summary)

    diagram = subparsers.add_parser("diagram", help="draw the model as a block diagram (png, svg or pdf)")
    _model_arguments(diagram)
    diagram.add_argument("-o", "--output", required=True, metavar="FILE", help="model.png, model.svg or model.pdf")
    diagram.add_argument("--horizontal", action="store_true", help="lay the layers out left to right")
    diagram.set_defaults(func=run_diagram)

    plot = subparsers.add_parser("plot", help="write curves.png, confusion.png, predictions.png into a run folder")
    plot.add_argument("run_dir", metavar="RUN_DIR")
    plot.add_argument("--mistakes", action="store_true", help="prediction grid of the most confident mistakes")
    plot.set_defaults(func=run_plot)

    predict = subparsers.add_parser(
        "predict", help="class predictions of a trained run as CSV",
        description="Predict a dataset split, image files or a folder of images with a run's best "
                    "checkpoint. Images of another size or mode are converted with a warning.")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    predict.add_argument("images", nargs="*", metavar="IMAGE_FILE", help="image files to classify")
    predict.add_argument("--dataset", metavar="NAME", help="predict a dataset split instead of files")
    predict.add_argument("--split", default="test", help="the dataset split (default test)")
    predict.add_argument("--data-dir", default=None, help="where datasets are stored")
    predict.add_argument("--folder", metavar="DIR", help="classify every image under DIR")
    predict.add_argument("--csv", metavar="OUT.csv", help="write the CSV here (default: standard output)")
    predict.add_argument("--kaggle", action="store_true", help="Kaggle digit-recognizer format: ImageId,Label")
    predict.set_defaults(func=run_predict)


def run_summary(args) -> int:
    from cnnlab.inspect import summary

    result = summary(args.model, args.input, engine=args.engine, num_classes=args.classes, depth=args.depth)
    print(result, end="")
    return 0


def run_diagram(args) -> int:
    from cnnlab.inspect import diagram

    orientation = "horizontal" if args.horizontal else "vertical"
    diagram(args.model, args.input, path=args.output, orientation=orientation,
            engine=args.engine, num_classes=args.classes)
    print(f"wrote {args.output}")
    return 0


def run_plot(args) -> int:
    from cnnlab.inspect import plot_run

    for path in plot_run(args.run_dir, mistakes_only=args.mistakes):
        print(f"wrote {path}")
    return 0


def run_predict(args) -> int:
    from cnnlab.inspect import csv_text, predict, write_csv

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict(args.run_dir, dataset=args.dataset, split=args.split, files=args.images,
                         folder=args.folder, data_dir=args.data_dir)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    for path, reason in result.skipped:
        print(f"skipped unreadable file {path}: {reason}", file=sys.stderr)
    if args.csv:
        write_csv(result, args.csv, kaggle=args.kaggle)
        line = f"wrote {len(result.ids)} prediction(s) to {args.csv}"
        if result.accuracy is not None:
            line += f" (accuracy {result.accuracy:.2%} against the dataset labels)"
        print(line, file=sys.stderr)
    else:
        sys.stdout.write(csv_text(result, kaggle=args.kaggle))
    return 0
