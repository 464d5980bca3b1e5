"""Subcommands of the `cnnlab` CLI, one module per area; each defines `register(subparsers)`."""
