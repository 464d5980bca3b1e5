"""`cnnlab check`: the scratch engine's parity suite against PyTorch, as a table; with
`--impl FILE`, a student's own layers graded against PyTorch instead (`cnnlab.verify.grade`)."""

from __future__ import annotations

import contextlib
import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check every NumPy (scratch) op against PyTorch on fresh random shapes, or grade "
             "your own layers (--impl)",
        description="Run each scratch layer and loss next to its PyTorch twin on random shapes "
        "(float64, same weights) and print the largest relative error of the forward output "
        "and of the gradients. Exits 1 if any check fails. With --impl FILE, grade the classes "
        "in your own Python file (named like torch.nn's, or a LAYERS dict) on a fixed battery "
        "of cases, with a diagnosis of what is wrong (docs/student_layers.md); exits 0 when "
        "every graded op passes, 1 otherwise.",
    )
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for the random shapes and values (default: fresh each run; "
                             "the seed used is printed)")
    parser.add_argument("--impl", metavar="FILE.py",
                        help="grade your own layers in this Python file against PyTorch")
    parser.add_argument("--ops", metavar="OP[,OP...]",
                        help="with --impl: grade only these ops, e.g. Conv2d,MaxPool2d")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default=None,
                        help="with --impl: report format (default text)")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="with --impl: time limit per op (default 10)")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.impl is not None:
        return run_grade(args)
    from cnnlab.errors import CnnlabError

    for flag, value in (("--ops", args.ops), ("--time-limit", args.time_limit),
                        ("--format", args.format)):
        if value is not None:
            raise CnnlabError(f"{flag} grades your own layers: use it with --impl FILE.py.")
    from cnnlab.verify.check import format_table, run_checks

    rows = run_checks(seed=args.seed)
    print(format_table(rows))
    return 0 if all(row["passed"] for row in rows) else 1


def run_grade(args) -> int:
    from cnnlab.engines.student_layers import StudentCodeError
    from cnnlab.verify.grade import TIME_LIMIT, format_report, grade

    ops = [op.strip() for op in args.ops.split(",") if op.strip()] if args.ops else None
    fmt = args.format or "text"
    # the student's prints must not break a JSON report on stdout: they go to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if fmt == "json" else \
        contextlib.nullcontext()
    try:
        with quiet:
            report = grade(args.impl, ops=ops, seed=args.seed,
                           time_limit=args.time_limit or TIME_LIMIT)
    except StudentCodeError as err:  # the submission fails; a wrong path or flag is exit 2
        if fmt == "json":
            import json

            print(json.dumps({"file": args.impl, "seed": args.seed, "passed": False,
                              "error": str(err), "ops": []}, indent=2))
        else:
            print(f"FAIL: {err}")
        return 1
    print(format_report(report, fmt))
    return 0 if report["passed"] else 1
