"""`cnnlab compare`: the study report for loose run folders."""

from __future__ import annotations


def register(subparsers) -> None:
    from cnnlab.commands.common import add_pdf_argument

    cmp_ = subparsers.add_parser("compare", help="the study report for loose run folders")
    cmp_.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    cmp_.add_argument("-o", "--output", default="report.html", help="report path (default: report.html)")
    add_pdf_argument(cmp_)
    cmp_.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.commands.common import pdf_and_stray, print_paths
    from cnnlab.study import compare

    pdf, stray = pdf_and_stray(args.pdf)
    print_paths(compare(([stray] if stray else []) + args.run_dirs, args.output, pdf=pdf or False), pdf)
    return 0
