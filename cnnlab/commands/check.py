"""`cnnlab check`: the scratch engine's parity suite against PyTorch, as a table."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check every NumPy (scratch) op against PyTorch on fresh random shapes",
        description="Run each scratch layer and loss next to its PyTorch twin on random shapes "
        "(float64, same weights) and print the largest relative error of the forward output "
        "and of the gradients. Exits 1 if any check fails.",
    )
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for the random shapes (default: fresh each run)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.verify.check import format_table, run_checks

    rows = run_checks(seed=args.seed)
    print(format_table(rows))
    return 0 if all(row["passed"] for row in rows) else 1
