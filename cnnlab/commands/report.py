"""`cnnlab report`: the HTML/Markdown report of a study folder, and with --pdf its PDF."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    rep = subparsers.add_parser("report", help="write the HTML/Markdown (and with --pdf the PDF) report of a study folder")
    rep.add_argument("study_dir", metavar="STUDY_DIR", nargs="?")  # optional only so `--pdf STUDY_DIR` parses
    rep.add_argument("-o", "--output", default=None, help="report path (default: STUDY_DIR/report.html)")
    add_pdf_argument(rep)
    rep.set_defaults(func=run)


def add_pdf_argument(parser) -> None:
    parser.add_argument("--pdf", nargs="?", const=True, default=None, metavar="PATH",
                        help="also print the report to PDF with headless Chromium or WeasyPrint "
                             "(default PATH: beside the HTML, .pdf)")


def pdf_and_stray(value) -> tuple[bool | str | None, str | None]:
    """(--pdf's value, a positional it swallowed): `--pdf STUDY_DIR` gives STUDY_DIR to --pdf."""
    if isinstance(value, str) and not value.lower().endswith(".pdf") and Path(value).is_dir():
        return True, value
    return value, None


def print_paths(html_path: Path, pdf) -> None:
    from cnnlab.study.pdf import pdf_target

    print(f"report: {html_path}")
    if pdf:
        print(f"pdf: {pdf_target(html_path, None if pdf is True else pdf)}")


def run(args) -> int:
    from cnnlab.errors import CnnlabError
    from cnnlab.study import report

    pdf, stray = pdf_and_stray(args.pdf)
    study_dir = args.study_dir
    if stray is not None:
        if study_dir is not None:
            raise CnnlabError(f"--pdf takes a path ending in .pdf, got the folder '{stray}'. Write "
                              f"`cnnlab report STUDY_DIR --pdf` for report.pdf beside the HTML.")
        study_dir = stray
    if study_dir is None:
        raise CnnlabError("cnnlab report needs a study folder: `cnnlab report STUDY_DIR [-o report.html] [--pdf]`.")
    print_paths(report(study_dir, args.output, pdf=pdf or False), pdf)
    return 0
