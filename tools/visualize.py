#!/usr/bin/env python
"""Rank lists and figures (CMC, distance histograms, ROC) of a trained model on its test sets.

python tools/visualize.py --config-file logs/quickstart/config.yaml --output logs/quickstart/vis \\
    MODEL.WEIGHTS logs/quickstart/model_final.pth
python tools/visualize.py --config-file X.yml --output DIR --num-queries 50 --order best \\
    MODEL.WEIGHTS W.pth TEST.VISUALIZE.TOP_K 20

Writes DIR/index.html (open it in a browser) with, per DATASETS.TESTS set, DIR/<set>/cmc.png,
distances.png, roc.png, curves.json, rank_lists.json and ranklists/*.png; the log goes to
DIR/log.txt and the config used to DIR/config.yaml. Options default to TEST.VISUALIZE.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Run as a script from a checkout: import the reid next to tools/ (installed, this is reid.tools).
if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.config import load_config  # noqa: E402
from reid.engine import build_model_for_eval, default_setup  # noqa: E402
from reid.engine.launch import run_tool  # noqa: E402
from reid.evaluation import format_results_table  # noqa: E402
from reid.visualization import ORDERS, visualize_test_sets  # noqa: E402


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file", required=True, metavar="FILE", help="the run's YAML config"
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder for index.html and the pictures"
    )
    parser.add_argument(
        "--num-queries",
        type=int,
        metavar="N",
        help="rank lists per test set (TEST.VISUALIZE.NUM_QUERIES; 0 = figures only)",
    )
    parser.add_argument(
        "--order",
        choices=ORDERS,
        help="queries by AP, worst or best first, or seeded random (TEST.VISUALIZE.ORDER)",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module first, e.g. one that registers out-of-tree components (repeatable)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs; MODEL.WEIGHTS names the checkpoint",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run the tool with ``argv`` (default: the command line)."""
    args = argument_parser().parse_args(argv)
    for module in args.imports:
        importlib.import_module(module)
    opts = list(args.opts or [])
    if args.num_queries is not None:
        opts += ["TEST.VISUALIZE.NUM_QUERIES", str(args.num_queries)]
    if args.order is not None:
        opts += ["TEST.VISUALIZE.ORDER", args.order]
    cfg = load_config(args.config_file, opts + ["OUTPUT_DIR", args.output])
    if not cfg.MODEL.WEIGHTS:
        raise ValueError(
            "tools/visualize.py needs MODEL.WEIGHTS, the checkpoint to draw "
            "(e.g. MODEL.WEIGHTS logs/quickstart/model_final.pth)"
        )
    cfg = default_setup(cfg, args)
    model = build_model_for_eval(cfg)
    results = visualize_test_sets(cfg, model, args.output, source=cfg.MODEL.WEIGHTS)
    print(format_results_table(results))
    print(f"Open {os.path.join(args.output, 'index.html')}")


def cli(argv: list[str] | None = None) -> int:
    """The command line (``reid-visualize``): errors as messages (``--debug``: the traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return run_tool(lambda: main(args), debug="--debug" in args)


if __name__ == "__main__":
    sys.exit(cli())
