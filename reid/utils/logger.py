"""Logging to the console and OUTPUT_DIR/log.txt (main process only)."""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "[%(asctime)s %(name)s]: %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"


def setup_logger(
    output_dir: str | None = None, distributed_rank: int = 0, name: str = "reid"
) -> logging.Logger:
    """Configure the ``reid`` logger: INFO to stdout on rank 0, everything to
    ``output_dir/log.txt``.

    Python warnings (e.g. dataset counts that differ from the official ones) go to the same places.
    Calling it again replaces the handlers (so tests and repeated runs do not duplicate lines).
    """
    logging.captureWarnings(True)
    _configure(logging.getLogger("py.warnings"), output_dir, distributed_rank)
    return _configure(logging.getLogger(name), output_dir, distributed_rank)


def _configure(
    logger: logging.Logger, output_dir: str | None, distributed_rank: int
) -> logging.Logger:
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
    if distributed_rank == 0:
        console = logging.StreamHandler(stream=sys.stdout)
        console.setLevel(logging.INFO)
        console.setFormatter(formatter)
        logger.addHandler(console)
    if output_dir:
        filename = "log.txt" if distributed_rank == 0 else f"log.txt.rank{distributed_rank}"
        os.makedirs(output_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(output_dir, filename), encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    return logger
