"""`cnnlab` subcommands for the train area."""


def register(subparsers) -> None:
    pass
