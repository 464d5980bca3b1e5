"""`cnnlab compare`: the study report for loose run folders."""

from __future__ import annotations


def register(subparsers) -> None:
    cmp_ = subparsers.add_parser("compare", help="the study report for loose run folders")
    cmp_.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    cmp_.add_argument("-o", "--output", default="report.html", help="report path (default: report.html)")
    cmp_.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.study import compare

    print(f"report: {compare(args.run_dirs, args.output)}")
    return 0
