"""Subcommands of the `cnnlab` CLI: `cnnlab/commands/<command>.py` defines `register(subparsers)`
for the command of its name and `run(args) -> int`; `common` holds arguments several share."""
