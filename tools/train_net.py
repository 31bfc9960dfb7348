#!/usr/bin/env python
"""Train and evaluate a ReID model from a YAML config.

python tools/train_net.py --config-file configs/Synthetic/quickstart.yml
python tools/train_net.py --config-file X.yml --resume
python tools/train_net.py --config-file X.yml --eval-only MODEL.WEIGHTS path/to/model_final.pth
python tools/train_net.py --config-file X.yml --num-gpus 4
torchrun --nproc_per_node 4 tools/train_net.py --config-file X.yml

An error is one line on stderr (exit status 1, 2 for a config error); --debug shows the traceback.
"""

import argparse
import os
import sys

# Run as a script from a checkout: import the reid next to tools/ (installed, this is reid.tools).
if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.engine import DefaultTrainer, build_model_for_eval, default_argument_parser, launch, setup  # noqa: E402
from reid.engine.launch import run_tool  # noqa: E402


def argument_parser() -> argparse.ArgumentParser:
    return default_argument_parser()


def main(args: argparse.Namespace) -> None:
    cfg = setup(args)
    if args.eval_only:
        DefaultTrainer.test(cfg, build_model_for_eval(cfg))
        return
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume, start_over=args.start_over)
    trainer.train()


def cli(argv: list[str] | None = None) -> int:
    """The command line (``reid-train``): parse ``argv`` and launch ``main`` on every process;
    errors are messages (``--debug`` shows the traceback), the exit status says which kind."""
    args = argument_parser().parse_args(argv)
    return run_tool(
        lambda: launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            timeout_s=args.dist_timeout,
        ),
        debug=args.debug,
    )


if __name__ == "__main__":
    sys.exit(cli())
