"""`cnnlab lr-find`: the LR range test for a config, its plot and a suggested LR."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lr-find", help="LR range test: sweep the LR, plot the loss, suggest an LR",
        description="Train on a few hundred batches while the learning rate grows exponentially "
                    "from --start-lr to --end-lr, stop when the smoothed loss diverges, draw the "
                    "loss against the LR and suggest the LR of its steepest descent. No run folder "
                    "is written.")
    p.add_argument("config", metavar="CONFIG.yaml", help="training config (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--steps", type=int, default=200, help="batches in the sweep (default 200)")
    p.add_argument("--start-lr", type=float, default=1e-6, help="first LR (default 1e-6)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last LR (default 10)")
    p.add_argument("-o", "--output", metavar="FILE", help="the plot (default lr_find.png beside CONFIG; .png/.svg/.pdf)")
    p.add_argument("--apply", nargs="?", const="", default=None, metavar="OUT.yaml",
                   help="write a copy of the config with optim.lr set to the suggestion "
                        "(default <CONFIG>.lr.yaml)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cnnlab.config import load_config, parse_overrides
    from cnnlab.results.lr_plot import lr_find_figure
    from cnnlab.training.lr_find import apply, lr_find
    from cnnlab.utils import save_figure

    config = load_config(args.config, parse_overrides(args.set))
    finding = lr_find(config, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
    source = Path(args.config)
    plot = Path(args.output) if args.output else source.with_name("lr_find.png")
    save_figure(lr_find_figure(finding), plot)
    end = "diverged" if finding.diverged else "no divergence"
    print(f"swept {len(finding.lrs)} batches, lr {finding.lrs[0]:.2g} to {finding.lrs[-1]:.2g} ({end}); "
          f"lowest smoothed loss at lr {finding.min_loss_lr:.2g}")
    print(f"wrote {plot}")
    if finding.suggestion is None:
        print("no suggestion: the loss did not clearly fall; widen the range or raise --steps")
        if args.apply is not None:
            apply(finding, args.apply)  # raises the error that says why nothing was written
        return 0
    print(f"suggested lr: {finding.suggestion:.3g}")
    if args.apply is not None:
        out = Path(args.apply) if args.apply else source.with_name(f"{source.stem}.lr.yaml")
        print(f"wrote {apply(finding, out)} (optim.lr = {finding.suggestion:.3g})")
    return 0
