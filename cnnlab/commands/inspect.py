"""`cnnlab` subcommands for the inspect area."""


def register(subparsers) -> None:
    pass
