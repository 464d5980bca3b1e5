"""`cnnlab` subcommands for the study area."""


def register(subparsers) -> None:
    pass
