"""`cnnlab models`: list the zoo with parameter counts."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the model zoo with parameter counts")
    parser.add_argument("--classes", type=int, default=10, help="number of classes (default 10)")
    parser.set_defaults(func=run)


def zoo_table(num_classes: int = 10) -> list[dict]:
    from cnnlab import models

    rows = []
    for name in models.names():
        entry = models.get(name)
        root = models.resolve(name, num_classes=num_classes)
        rows.append({
            "name": name,
            "input": "x".join(map(str, entry.input_shape)),
            "params": root.total_params(),
            "macs": root.total_macs(),
            "options": ", ".join(f"{k}={v}" for k, v in entry.options.items()),
            "description": entry.description,
        })
    return rows


def run(args) -> int:
    rows = zoo_table(args.classes)
    header = f"{'name':<16}{'input':<9}{'params':>12}{'MACs':>14}  options"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<16}{r['input']:<9}{r['params']:>12,}{r['macs']:>14,}  {r['options']}")
    return 0
