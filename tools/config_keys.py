#!/usr/bin/env python
"""Print every config key with its default and meaning (Markdown), or write it to a file.

python tools/config_keys.py                         # print the reference
python tools/config_keys.py --output docs/CONFIG.md # refresh the committed reference
python tools/config_keys.py --import my_project.losses   # with out-of-tree components
"""

import argparse
import importlib
import os
import sys

# Run as a script from a checkout: import the reid next to tools/ (installed, this is reid.tools).
if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.config.reference import render_reference  # noqa: E402
from reid.engine.launch import run_tool  # noqa: E402
from reid.utils.file_io import atomic_write_text  # noqa: E402


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", metavar="FILE", help="write the reference here")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that declares components first, and document its keys (repeatable)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)
    for module in args.imports:
        importlib.import_module(module)
    text = render_reference(packages=("reid", *args.imports))
    if args.output:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")


def cli(argv: list[str] | None = None) -> int:
    """The command line (``reid-config-keys``): errors as messages (``--debug``: traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return run_tool(lambda: main(args), debug="--debug" in args)


if __name__ == "__main__":
    sys.exit(cli())
