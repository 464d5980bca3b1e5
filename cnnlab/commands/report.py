"""`cnnlab report`: the HTML/Markdown report of a study folder, and with --pdf its PDF."""

from __future__ import annotations


def register(subparsers) -> None:
    from cnnlab.commands.common import add_pdf_argument

    rep = subparsers.add_parser("report", help="write the HTML/Markdown (and with --pdf the PDF) report of a study folder")
    rep.add_argument("study_dir", metavar="STUDY_DIR", nargs="?",  # optional only so `--pdf STUDY_DIR` parses
                     help="the study folder (required)")
    rep.add_argument("-o", "--output", default=None, help="report path (default: STUDY_DIR/report.html)")
    add_pdf_argument(rep)
    rep.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.commands.common import pdf_and_stray, print_paths
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
