"""`cnnlab` subcommands for the models area."""


def register(subparsers) -> None:
    pass
