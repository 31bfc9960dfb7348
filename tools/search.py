#!/usr/bin/env python
"""Query a gallery: the k nearest gallery images of each query, as a table and as JSON.

python tools/search.py --config-file logs/quickstart --gallery gallery_photos/ \\
    --query person1.jpg person2.jpg --k 5 --output matches.json
python tools/search.py --config-file logs/quickstart --gallery gallery_photos/ \\
    --save-index gallery.npz                               # index once ...
python tools/search.py --gallery gallery.npz --query query.npz --k 10 --backend faiss   # ... reuse

--gallery is image files / folders / globs, or one .npz feature file (a saved index, or the output
of tools/extract_features.py); --query likewise (images need --config-file, the model of the
gallery's features). Distances are TEST.METRIC's: cosine = 1 - cos, euclidean = squared
Euclidean. --backend torch (exact, always there) or faiss (an exact flat index; on the GPU when
faiss-gpu is installed and a GPU is visible, else on the CPU).
"""

import argparse
import os
import sys

# Run as a script from a checkout: import the reid next to tools/ (installed, this is reid.tools).
if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.evaluation.search import (  # noqa: E402
    SEARCH_REGISTRY,
    FeatureFile,
    FeatureIndex,
    load_features,
)
from reid.inference import (  # noqa: E402
    FeatureExtractor,
    add_extractor_arguments,
    extractor_from_args,
    find_images,
)
from reid.utils.file_io import atomic_write_json  # noqa: E402
from reid.utils.logger import setup_logger  # noqa: E402


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    add_extractor_arguments(parser, required=False)
    parser.add_argument(
        "--gallery", nargs="+", required=True, metavar="PATH", help="images, or one .npz"
    )
    parser.add_argument("--query", nargs="+", metavar="PATH", help="images, or one .npz")
    parser.add_argument("--k", type=int, default=10, help="matches per query (default 10)")
    parser.add_argument(
        "--backend", default="torch", choices=SEARCH_REGISTRY.names(), help="default torch"
    )
    parser.add_argument(
        "--search-on",
        default="auto",
        choices=("auto", "cpu", "gpu"),
        help="auto: the GPU when the backend can use one",
    )
    parser.add_argument("--output", metavar="FILE.json", help="write the matches as JSON")
    parser.add_argument(
        "--save-index", metavar="FILE.npz", help="write the gallery's index (a feature file)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def _is_feature_file(inputs: list[str]) -> bool:
    """One .npz (a feature file), or images; a mix is an error."""
    npz = [p for p in inputs if p.endswith(".npz")]
    if npz and len(inputs) > 1:
        raise ValueError(f"give either one .npz feature file or images, got {inputs}")
    return bool(npz)


class Features:
    """Loads feature files and extracts images' features with one model, built when needed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._extractor: FeatureExtractor | None = None
        self.failed: list[tuple[str, str]] = []

    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            if not self.args.config_file:
                raise ValueError("images given: --config-file must name the model to use")
            self._extractor = extractor_from_args(self.args)
        return self._extractor

    def of(self, inputs: list[str]) -> FeatureFile:
        if _is_feature_file(inputs):
            return load_features(inputs[0])
        extractor = self.extractor()
        result = extractor.extract_files(find_images(inputs), progress=not self.args.no_progress)
        self.failed.extend(result.failed)
        return FeatureFile(result.features, result.paths, extractor.metric)


def format_matches(results: list[dict], metric: str) -> str:
    """One block per query: rank, distance, gallery image."""
    lines = []
    for entry in results:
        lines.append(f"query {entry['query']}")
        lines.append(f"  {'rank':>4}  {metric + ' distance':>18}  gallery")
        for match in entry["matches"]:
            lines.append(f"  {match['rank']:>4}  {match['distance']:>18.6f}  {match['path']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    features = Features(args)
    gallery = features.of(args.gallery)
    if not gallery.paths:
        raise ValueError("the gallery has no readable image")
    use_gpu = None if args.search_on == "auto" else args.search_on == "gpu"
    index = FeatureIndex(gallery.features, gallery.paths, gallery.metric, args.backend, use_gpu)
    where = "GPU" if index.use_gpu else "CPU"
    print(
        f"Gallery: {len(index)} images, {index.dim}-d {index.metric} features "
        f"({args.backend}, {where})"
    )
    if args.save_index:
        index.save(args.save_index)
        print(f"Saved the index to {args.save_index}")
    results: list[dict] = []
    if args.query:
        query = features.of(args.query)
        if query.metric != index.metric:
            raise ValueError(
                f"the queries' features are for the {query.metric} metric, the gallery's for "
                f"{index.metric}: extract both with the same config"
            )
        if query.paths:
            results = index.matches(query.features, args.k, query.paths)
            print(format_matches(results, index.metric))
    if args.output:
        atomic_write_json(
            args.output,
            {
                "metric": index.metric,
                "backend": args.backend,
                "k": args.k,
                "gallery_size": len(index),
                "queries": results,
            },
        )
        print(f"Wrote {args.output}")
    if features.failed:
        print(f"{len(features.failed)} image(s) could not be read and were skipped:")
        for path, reason in features.failed:
            print(f"  {path}: {reason}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Search; 0 on success, 1 when images were skipped, 2 on an error (printed)."""
    parser = argument_parser()
    args = parser.parse_args(argv)
    if not args.query and not args.save_index:
        parser.error("nothing to do: give --query, --save-index or both")
    if args.k < 1:
        parser.error(f"--k must be >= 1, got {args.k}")
    setup_logger()
    try:
        return run(args)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
