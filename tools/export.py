#!/usr/bin/env python
"""Export a trained model for deployment (ONNX, TorchScript, torch.export) and check it.

python tools/export.py --config-file logs/quickstart --format onnx --output quickstart.onnx
python tools/export.py --config-file logs/quickstart --format export --output quickstart.pt2 \\
    MODEL.WEIGHTS logs/quickstart/model_best.pth

The exported model takes `images`, a float32 B x 3 x H x W tensor (RGB, values 0..255, resized to
INPUT.SIZE_TEST as the test transform does; any batch size) and returns `features` (B x D), with
the pixel normalisation, the flip averaging (TEST.FLIP.ENABLED) and, for TEST.METRIC cosine, the L2
normalisation inside. The export runs on the CPU in float32. Afterwards the file is loaded back
(ONNX with onnxruntime) and run on random batches of 1 and 3 images beside PyTorch; the largest
difference is printed, and above 1e-4 (relative) the exit status is 1. A JSON file next to the
output (<output>.json) describes the input, the output and the parity.
"""

import argparse
import os
import sys
import time

# Run as a script from a checkout: import the reid next to tools/ (installed, this is reid.tools).
if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.config import find_config_file, load_config  # noqa: E402
from reid.export import (  # noqa: E402
    EXPORT_FORMATS,
    check_parity,
    export_feature_model,
    model_card,
)
from reid.inference import FeatureModel, build_inference_model, default_weights  # noqa: E402
from reid.utils.file_io import atomic_write_json  # noqa: E402
from reid.utils.logger import setup_logger  # noqa: E402


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument(
        "--config-file",
        required=True,
        metavar="FILE",
        help="a config file, a run folder or a shipped config's name; the weights are "
        "MODEL.WEIGHTS, else the run's model_final.pth",
    )
    parser.add_argument("--format", required=True, choices=list(EXPORT_FORMATS))
    parser.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="the exported file (.onnx, .pt for TorchScript, .pt2 for torch.export)",
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Export, check parity, write the model card; 0 when the parity is within tolerance, 1
    when not, 2 when the config or the weights cannot be used."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.format == "export" and not args.output.endswith(".pt2"):
        parser.error(
            f"--format export writes a .pt2 file (torch.export.load needs it): {args.output}"
        )
    setup_logger()
    try:
        config_file = find_config_file(args.config_file)
        cfg = load_config(config_file, args.opts or [])
        weights = default_weights(cfg, config_file)
        model = FeatureModel(
            build_inference_model(cfg, weights, device="cpu"),
            flip=cfg.TEST.FLIP.ENABLED,
            metric=cfg.TEST.METRIC,
            input_size=cfg.INPUT.SIZE_TEST,
        )
    except (ValueError, FileNotFoundError) as e:  # config, weights: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    export_feature_model(model, args.format, args.output, opset=args.opset)
    size_mb = os.path.getsize(args.output) / 2**20
    print(
        f"Exported {weights} to {args.output} ({args.format}, {size_mb:.1f} MiB) in "
        f"{time.perf_counter() - start:.1f} s"
    )
    parity = check_parity(model, args.format, args.output)
    print(parity.describe())
    height, width = model.input_size
    dim = model.feature_dim()
    card = model_card(model, args.format, weights, dim, parity, cfg.INPUT.INTERPOLATION)
    atomic_write_json(args.output + ".json", card)
    print(
        f"Input 'images': float32 B x 3 x {height} x {width}, RGB, 0..255; output 'features': "
        f"B x {dim} ({'L2-normalised' if model.normalized else 'not normalised'}, "
        f"{cfg.TEST.METRIC}); described in {args.output}.json"
    )
    return 0 if parity.ok else 1


if __name__ == "__main__":
    sys.exit(main())
