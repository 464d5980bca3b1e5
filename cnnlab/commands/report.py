"""`cnnlab report`: the HTML/Markdown report of a study folder."""

from __future__ import annotations


def register(subparsers) -> None:
    rep = subparsers.add_parser("report", help="write the HTML/Markdown report of a study folder")
    rep.add_argument("study_dir", metavar="STUDY_DIR")
    rep.add_argument("-o", "--output", default=None, help="report path (default: STUDY_DIR/report.html)")
    rep.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.study import report

    print(f"report: {report(args.study_dir, args.output)}")
    return 0
