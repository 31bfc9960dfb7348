#!/usr/bin/env python
"""Test features of your own images with a trained model, written to an .npz file.

python tools/extract_features.py --config-file logs/quickstart --input photos/ --output feats.npz
python tools/extract_features.py --config-file configs/Synthetic/quickstart.yml \\
    --input "datasets/synthetic/*/query/*.jpg" --output query.npz MODEL.DEVICE cpu

--config-file is a config file, a run folder (its config.yaml) or a shipped config's name; the
weights are MODEL.WEIGHTS, else the run's model_final.pth. --input takes files, folders (searched
recursively for images) and glob patterns. The output holds `features` (N x D float32, L2-normalised
when TEST.METRIC is cosine), `paths` (N strings) and `metric`, and is written atomically. Images
that cannot be read are skipped and listed at the end (exit status 1; the others are written).
"""

import argparse
import os
import sys
import time

# Run as a script from a checkout: import the reid next to tools/ (installed, this is reid.tools).
if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.evaluation.search import save_features  # noqa: E402
from reid.inference import add_extractor_arguments, extractor_from_args, find_images  # noqa: E402
from reid.utils.logger import setup_logger  # noqa: E402


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    add_extractor_arguments(parser)
    parser.add_argument(
        "--input", nargs="+", required=True, metavar="PATH", help="image files, folders, globs"
    )
    parser.add_argument("--output", required=True, metavar="FILE.npz", help="the feature file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def report_failures(failed: list[tuple[str, str]]) -> None:
    """List the images that were skipped, with the reason."""
    if failed:
        print(f"{len(failed)} image(s) could not be read and were skipped:")
        for path, reason in failed:
            print(f"  {path}: {reason}")


def main(argv: list[str] | None = None) -> int:
    """Extract and write the features; 0 when every image was read, 1 when some were skipped
    (the others are written), 2 when the config or the weights cannot be used."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    if not args.output.endswith(".npz"):
        parser.error(f"--output must end in .npz, got {args.output}")
    setup_logger()
    try:
        paths = find_images(args.input)
    except FileNotFoundError as e:
        parser.error(str(e))
    try:
        extractor = extractor_from_args(args)
    except (ValueError, FileNotFoundError) as e:  # config, weights: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    result = extractor.extract_files(paths, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    save_features(args.output, result.features, result.paths, extractor.metric)
    count, dim = result.features.shape[0], extractor.feature_dim
    kind = "L2-normalised" if extractor.normalized else "not normalised"
    print(
        f"Wrote {args.output}: {count} features of dimension {dim} ({extractor.metric}, {kind}) "
        f"of {len(paths)} images in {seconds:.1f} s ({count / max(seconds, 1e-9):.1f} images/s "
        f"on {extractor.device}, {args.precision})"
    )
    report_failures(result.failed)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
