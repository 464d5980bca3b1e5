"""The `cnnlab` command: builds the parser from `cnnlab.commands` and turns errors into exit codes.

Every subcommand lives in `cnnlab/commands/<name>.py` as `register(subparsers)`; it parses,
calls the Python API and prints. Nothing else happens here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
import warnings

# Command modules, one per command and named after it, in the order `cnnlab --help` lists them.
COMMAND_MODULES = ("train", "demo", "datasets", "models", "check", "summary", "diagram", "plot",
                   "predict", "export", "lr_find", "study", "report", "compare", "runs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="CNN labs and studies: train, inspect, compare, report.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cnnlab.commands.{name}")
        module.register(subparsers)
    for sub in subparsers.choices.values():  # `cnnlab train ... --debug` works too
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show full tracebacks on errors")
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings as one line, `warning: <message>`, without the source path and code."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=file or sys.stderr)


def _paragraph(message: str) -> str:
    # no breaks inside paths, URLs or hyphenated names: they must stay copy-pasteable
    return "\n".join(textwrap.fill(p, width=100, break_on_hyphens=False, break_long_words=False)
                     for p in str(message).split("\n"))


def run() -> None:
    """The `cnnlab` command: `main` on the command line, then exit with its code (without the
    interpreter's ~1.5 s teardown of torch: `cnnlab.utils.exit_skipping_teardown`)."""
    from cnnlab.utils import exit_skipping_teardown

    exit_skipping_teardown(main())


def main(argv: list[str] | None = None) -> int:
    from cnnlab.errors import CnnlabError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("CNNLAB_DEBUG") == "1"
    previous_showwarning = warnings.showwarning
    if not debug:
        warnings.showwarning = _show_warning
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except CnnlabError as err:
        if debug:
            raise
        print(f"error: {_paragraph(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: stopped by Ctrl-C; files already written are complete.", file=sys.stderr)
        return 130
    except OSError as err:  # a write outside the atomic helpers: same message, the real target
        from cnnlab.utils import output_error, target_of

        translated = output_error(err, target_of(err.filename)) if err.filename else None
        if debug or translated is None:
            if debug:
                raise
            return _internal_error(err)
        print(f"error: {_paragraph(translated)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug in cnnlab, not the user's fault
        if debug:
            raise
        return _internal_error(err)
    finally:
        warnings.showwarning = previous_showwarning


def _internal_error(err: Exception) -> int:
    print(
        f"internal error: {type(err).__name__}: {err}. This is a bug in cnnlab; "
        "run again with --debug for the traceback and report it.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
