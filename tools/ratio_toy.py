#!/usr/bin/env python
r"""The ratio-loss paper's toy run (Section 3.4, Figure 2): an 8-layer CNN with 2-D features
trained on MNIST with softmax, normalised softmax, and normalised softmax + ratio loss; writes the
six panels (original and normalised features per variant) as one image, and a JSON summary beside
it.

    python tools/ratio_toy.py                                   # MNIST under datasets/
    python tools/ratio_toy.py --root /data --output logs/ratio_toy/figure2.png --epochs 20

MNIST is read from its standard IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each also as .gz) in <root>/MNIST/raw,
<root>/MNIST or <root>/mnist; <root> defaults to $REID_DATASETS, else datasets/.
"""

import argparse
import logging
import os
import sys
from collections.abc import Sequence

# Run as a script from a checkout: import the reid next to tools/ (installed, this is reid.tools).
if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.data.datasets.build import DEFAULT_ROOT, ROOT_ENV  # noqa: E402
from reid.data.mnist import IdxFormatError, load_mnist  # noqa: E402
from reid.engine.launch import run_tool  # noqa: E402
from reid.figures.ratio_toy import VARIANTS, ToySettings, run_ratio_toy  # noqa: E402
from reid.utils.logger import setup_logger  # noqa: E402

DEFAULT_OUTPUT = os.path.join("logs", "ratio_toy", "figure2.png")


def argument_parser() -> argparse.ArgumentParser:
    defaults = ToySettings()
    parser = argparse.ArgumentParser(
        description="The ratio-loss paper's MNIST toy run (Figure 2)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--root",
        default=os.environ.get(ROOT_ENV) or DEFAULT_ROOT,
        help=f"datasets root holding MNIST (default: ${ROOT_ENV}, else {DEFAULT_ROOT})",
    )
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="the image (default %(default)s)")
    parser.add_argument(
        "--per-class",
        type=int,
        default=defaults.per_class,
        help="training images per digit (default %(default)s, as the paper)",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="SGD learning rate")
    parser.add_argument(
        "--nsl-scale", type=float, default=defaults.nsl_scale, help="s of the normalised softmax"
    )
    parser.add_argument(
        "--ratio-weight", type=float, default=defaults.ratio_weight, help="lambda of the ratio loss"
    )
    parser.add_argument(
        "--ratio-eps", type=float, default=defaults.ratio_eps, help="eps of the ratio loss"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="the columns of the figure (default: all three)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    setup_logger()
    logging.getLogger("reid").setLevel(logging.INFO)
    settings = ToySettings(
        per_class=args.per_class,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        nsl_scale=args.nsl_scale,
        ratio_weight=args.ratio_weight,
        ratio_eps=args.ratio_eps,
        seed=args.seed,
        device=args.device,
    )
    mnist = load_mnist(os.path.abspath(os.path.expanduser(args.root)))
    results = run_ratio_toy(mnist, args.output, settings, tuple(args.variants))
    for name, result in results.items():
        print(
            f"{VARIANTS[name]}: train accuracy {result.train_accuracy:.2f} %, "
            f"test accuracy {result.test_accuracy:.2f} %"
        )
    print(f"wrote {args.output} and {os.path.splitext(args.output)[0]}.json")
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """The command line (``reid-ratio-toy``): errors as messages (``--debug``: the traceback);
    status 2 when MNIST, an argument or matplotlib is missing or wrong."""
    args = list(sys.argv[1:] if argv is None else argv)
    return run_tool(
        lambda: main(args),
        debug="--debug" in args,
        usage_errors=(FileNotFoundError, IdxFormatError, ValueError, ImportError),
    )


if __name__ == "__main__":
    sys.exit(cli())
