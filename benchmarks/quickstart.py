#!/usr/bin/env python
"""Times the README's quick-start and compares its mAP with the same network untrained.

    python benchmarks/quickstart.py [KEY VALUE ...]

Prints the wall time of the quick-start run (data generation on first use, training, evaluation)
and the evaluation table of the trained model and of the untrained model (same config and seed,
no training step), so the synthetic set's difficulty can be read off.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.config import load_config  # noqa: E402
from reid.data.datasets import build_train_records  # noqa: E402
from reid.engine import DefaultTrainer, default_setup  # noqa: E402
from reid.engine.defaults import with_num_classes  # noqa: E402
from reid.modeling import build_model  # noqa: E402

CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "configs",
    "Synthetic",
    "quickstart.yml",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args()
    cfg = default_setup(
        load_config(CONFIG, ["OUTPUT_DIR", "logs/benchmark_quickstart", *args.opts])
    )

    start = time.perf_counter()
    trainer = DefaultTrainer(cfg)
    trainer.train()
    trained = trainer.test(cfg, trainer.model)
    wall = time.perf_counter() - start

    untrained_cfg = with_num_classes(cfg, build_train_records(cfg)[1])
    untrained = DefaultTrainer.test(untrained_cfg, build_model(untrained_cfg))

    print(f"\nquick-start wall time (build, train, evaluate twice): {wall:.1f} s")
    print(f"{'model':<10} {'Rank-1':>7} {'Rank-5':>7} {'Rank-10':>8} {'mAP':>7} {'mINP':>7}")
    for name, results in (("trained", trained), ("untrained", untrained)):
        for metrics in results.values():
            print(
                f"{name:<10} {metrics['Rank-1']:>7.2f} {metrics['Rank-5']:>7.2f} "
                f"{metrics['Rank-10']:>8.2f} "
                f"{metrics['mAP']:>7.2f} {metrics['mINP']:>7.2f}"
            )


if __name__ == "__main__":
    main()
