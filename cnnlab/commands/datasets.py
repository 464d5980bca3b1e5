"""`cnnlab datasets`: where each dataset is looked for, and whether it is present and verified."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="list datasets, where they are looked for, and whether present and verified",
        description="List the registered datasets with their location in the data directory "
                    "(--data-dir, then $CNNLAB_DATA, then ~/.cache/cnnlab). Files present are "
                    "checked against the published checksums. Any image folder can also be "
                    "used as 'folder:PATH'.",
    )
    parser.add_argument("--data-dir", default=None, metavar="DIR", help="the data directory")
    parser.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.data import describe, resolve_data_dir

    rows = describe(args.data_dir)
    print(f"data directory: {resolve_data_dir(args.data_dir)}")
    print(format_table(rows))
    print("also: folder:PATH  (PATH/{train,test}/<class>/*.png|jpg, or a .tar of that tree)")
    return 0


def format_table(rows: list[dict]) -> str:
    """The rows of `cnnlab.data.describe()` as an aligned text table."""
    marks = {True: "yes", False: "NO", None: "-"}
    header = ("name", "location", "present", "verified", "note")
    lines = [header] + [(r["name"], r["location"], marks[r["present"]], marks[r["verified"]], r["note"])
                        for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1]
                     for line in lines)
