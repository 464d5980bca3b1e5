"""Arguments several commands share."""

from __future__ import annotations

from pathlib import Path

from cnnlab import engines

MODEL_HELP = "a zoo name, a SPEC.yaml file or a run folder"


def model_arguments(parser) -> None:
    """The model to inspect: a name, spec file or run folder, its input shape, classes, engine."""
    parser.add_argument("model", metavar="NAME|SPEC.yaml|RUN_DIR", help=MODEL_HELP)
    parser.add_argument("--input", metavar="CxHxW", default=None,
                        help="input shape without the batch, e.g. 3x32x32 (default: the model's own)")
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    parser.add_argument("--engine", choices=engines.names(), default=None,
                        help="engine to build the model in (default: a run's own, else torch)")


def add_pdf_argument(parser) -> None:
    """`--pdf [PATH]` of `report` and `compare`: the same report printed to PDF (cnnlab.study.pdf)."""
    parser.add_argument("--pdf", nargs="?", const=True, default=None, metavar="PATH",
                        help="also print the report to PDF with headless Chromium or WeasyPrint "
                             "(default PATH: beside the HTML, .pdf)")


def pdf_and_stray(value) -> tuple[bool | str | None, str | None]:
    """(--pdf's value, a positional it swallowed): `--pdf STUDY_DIR` gives STUDY_DIR to --pdf."""
    if isinstance(value, str) and not value.lower().endswith(".pdf") and Path(value).is_dir():
        return True, value
    return value, None


def print_paths(html_path: Path, pdf) -> None:
    """The report's path, and the PDF's when --pdf was given."""
    from cnnlab.study.pdf import pdf_target

    print(f"report: {html_path}")
    if pdf:
        print(f"pdf: {pdf_target(html_path, None if pdf is True else pdf)}")
