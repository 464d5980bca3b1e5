"""`cnnlab predict`: class predictions of a trained run as CSV."""

from __future__ import annotations

import sys
import warnings


def register(subparsers) -> None:
    predict = subparsers.add_parser(
        "predict", help="class predictions of a trained run as CSV",
        description="Predict a dataset split, image files or a folder of images with a run's best "
                    "checkpoint. Images of another size or mode are converted with a warning.")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    predict.add_argument("images", nargs="*", metavar="IMAGE_FILE", help="image files to classify")
    predict.add_argument("--dataset", metavar="NAME", help="predict a dataset split (default: the run's own dataset when no files are given)")
    predict.add_argument("--split", default="test", help="the dataset split (default test)")
    predict.add_argument("--data-dir", default=None, help="where datasets are stored")
    predict.add_argument("--folder", metavar="DIR", help="classify every image under DIR")
    predict.add_argument("--csv", metavar="OUT.csv", help="write the CSV here (default: standard output)")
    predict.add_argument("--kaggle", action="store_true", help="Kaggle submission format: ImageId,Label (the class name)")
    predict.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.results import csv_text, predict, write_csv

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
