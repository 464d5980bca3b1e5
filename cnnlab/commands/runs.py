"""`cnnlab runs`: one row per run folder under a directory (a table or JSON)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "runs", help="list the run folders under a directory",
        description="One row per run folder under DIR (default runs; study folders work too): "
                    "name, version, model, dataset, engine, status, epochs, best val acc, test acc, "
                    "s/epoch, date.")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="folder holding run folders (default runs)")
    p.add_argument("--sort", metavar="KEY", help="sort by a column; --sort=-KEY sorts descending (e.g. --sort=-test_acc)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep rows where KEY equals VALUE (repeatable), e.g. --filter status=completed")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.runs import list_runs

    rows = list_runs(args.dir, sort=args.sort, filters=args.filter)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no run folders under {args.dir}")
    else:
        print(format_table(rows))
    return 0


TABLE = (("run", lambda r: f"{r['name']}/{r['version']}" if r["version"] else r["name"]),
         ("model", lambda r: r["model"]), ("dataset", lambda r: r["dataset"]),
         ("engine", lambda r: r["engine"]), ("status", lambda r: r["status"]),
         ("epochs", lambda r: r["epochs"]),
         ("best val acc", lambda r: _percent(r["best_val_acc"])),
         ("test acc", lambda r: _percent(r["test_acc"])),
         ("s/epoch", lambda r: f"{r['s_per_epoch']:.2f}" if r["s_per_epoch"] is not None else "-"),
         ("date", lambda r: r["date"]))


def _percent(value) -> str:
    return f"{100 * value:.2f}%" if value is not None else "-"


def format_table(rows: list[dict]) -> str:
    """The rows as an aligned text table, numbers right-aligned."""
    cells = [[name for name, _ in TABLE]] + [[str(get(r) if get(r) is not None else "-") for _, get in TABLE]
                                             for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE))]
    numeric = {"epochs", "best val acc", "test acc", "s/epoch"}
    return "\n".join("  ".join(c.rjust(w) if TABLE[i][0] in numeric else c.ljust(w)
                               for i, (c, w) in enumerate(zip(line, widths))).rstrip()
                     for line in cells)
