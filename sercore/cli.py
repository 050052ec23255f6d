"""Command-line entry: `python -m sercore <command> --help`.

Each command lives beside the code it drives and registers itself here through `register(subparsers)`;
heavy imports happen inside the command, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib

# Modules that each define register(subparsers). Add a line when a command is added.
COMMAND_MODULES = [
    "sercore.data.cli",
    "sercore.book",
    "sercore.bench",
    "sercore.features.cli",
    "sercore.train.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sercore",
        description="sercore: attention in speech emotion recognition. Corpora, features, models, "
        "training, benchmarks and the companion book.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)
