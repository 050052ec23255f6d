"""Command-line entry: `python -m sercore <command> --help`.

Each command lives beside the code it drives and registers itself here through `register(subparsers)`;
heavy imports happen inside the command, so `--help` stays fast.

Expected user errors (a missing or existing path, a bad value, an unknown key or setting, a SystemExit with
a message, sercore's own error classes) end as one line on stderr, "python -m sercore <command>: error:
<message> (--debug for the traceback)", and exit code 2, like argparse's own usage errors. The message is
the exception's, newlines collapsed. `--debug` (before or after the command) or SERCORE_DEBUG=1 shows the
traceback instead. Any other exception is a bug and keeps its traceback; so does a KeyError whose argument
is a bare key rather than a sentence (a failed lookup such as KeyError('label'), not a message).
Ctrl-C (KeyboardInterrupt) ends as "python -m sercore <command>: interrupted" and exit code 130, 128 + SIGINT
as a shell reports it (an interruption carrying its own `exit_status`, e.g. sercore.book's SIGTERM, uses
that); with --debug it keeps its traceback.

A command module whose import fails for want of a third-party package (the GPU machine has no soundfile or
papermill, and needs only `gpu-check` and `bench`) is left out, named in `--help`'s closing lines; asking for
a command that is not there then fails in one line naming the missing packages.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

# Modules that each define register(subparsers). Add a line when a command is added.
COMMAND_MODULES = [
    "sercore.data.cli",
    "sercore.book",
    "sercore.bench",
    "sercore.features.cli",
    "sercore.train.cli",
    "sercore.predict",
    "sercore.gpucheck",
]

EXPECTED_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
                   ValueError, KeyError)
# sercore's own error classes, as (module, class); checked only when the module was imported, since an
# instance can exist only then (importing them up front would slow --help).
OWN_ERRORS = [("sercore.data.espeak", "EspeakError"), ("sercore.data.audio", "AudioError")]

DEBUG_HELP = "show the full traceback of an error (also SERCORE_DEBUG=1)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sercore",
        description="sercore: attention in speech emotion recognition. Corpora, features, models, "
        "training, benchmarks and the companion book.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    parser.unavailable = {}
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is None or error.name.split(".")[0] == "sercore":
                raise  # a bug in sercore, not a missing dependency
            parser.unavailable[name] = error.name
            continue
        module.register(subparsers)
    if parser.unavailable:
        parser.epilog = "not available here: " + "; ".join(
            f"{module} (needs {package})" for module, package in parser.unavailable.items())
    # --debug after the command too; SUPPRESS keeps a command's parser from resetting one given before it.
    for command in subparsers.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def _commands(parser) -> set[str]:
    return {name for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices}


def _own_errors() -> tuple[type, ...]:
    found = []
    for module, name in OWN_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(getattr(loaded, name, None), type):
            found.append(getattr(loaded, name))
    return tuple(found)


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of an expected user error, or None when `error` is a bug (keep its traceback)."""
    if isinstance(error, SystemExit):
        message = error.code if isinstance(error.code, str) else None
    elif isinstance(error, KeyError):
        # str(KeyError) quotes its argument; a message is a sentence, a bare key is a failed lookup.
        arg = error.args[0] if len(error.args) == 1 else None
        message = arg if isinstance(arg, str) and " " in arg.strip() else None
    elif isinstance(error, EXPECTED_ERRORS + _own_errors()):
        message = str(error) or type(error).__name__
    else:
        message = None
    return re.sub(r"\s*\n\s*", " ", message).strip() if message is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if parser.unavailable and command is not None and command not in _commands(parser):
        print(f"{parser.prog}: error: no command {command!r} here; left out for missing packages: "
              f"{parser.epilog.split(': ', 1)[1]}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    debug = args.debug or os.environ.get("SERCORE_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as error:
        if debug:
            raise
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return getattr(error, "exit_status", 130)
    except (Exception, SystemExit) as error:
        message = None if debug else user_error_message(error)
        if message is None:
            raise
        print(f"{parser.prog} {args.command}: error: {message} (--debug for the traceback)", file=sys.stderr)
        return 2
