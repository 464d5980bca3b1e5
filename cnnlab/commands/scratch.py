"""`cnnlab` subcommands for the scratch area."""


def register(subparsers) -> None:
    pass
