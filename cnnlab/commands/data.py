"""`cnnlab` subcommands for the data area."""


def register(subparsers) -> None:
    pass
