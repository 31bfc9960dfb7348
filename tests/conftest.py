"""Shared test settings: one torch thread, seeding, logging reset, and a tiny end-to-end config."""

import logging
import os
from collections.abc import Callable
from types import ModuleType

import pytest
import torch

from reid.config import load_config

# Tests run tiny tensors and images, for which one thread is several times faster than two.
torch.set_num_threads(1)

# A run small enough for CPU tests: a 6-identity synthetic set at 32x16, ResNet-18, P=2 x K=4,
# with reid's choices where fastreid's defaults differ (PK sampler, identity epochs, BN neck,
# batch-hard triplet, Adam 3.5e-4 without warm-up, the schedule counted from the start).
TINY_OPTS = [
    "DATASETS.NAMES",
    "('Synthetic',)",
    "DATASETS.TESTS",
    "('Synthetic',)",
    "DATASETS.SYNTHETIC.NUM_TRAIN_IDS",
    "6",
    "DATASETS.SYNTHETIC.NUM_TEST_IDS",
    "5",
    "DATASETS.SYNTHETIC.IMGS_PER_ID",
    "4",
    "DATASETS.SYNTHETIC.IMAGE_SIZE",
    "[32, 16]",
    "DATASETS.SYNTHETIC.NUM_DISTRACTORS",
    "3",
    "DATASETS.SYNTHETIC.NUM_JUNK",
    "2",
    "MODEL.DEVICE",
    "cpu",
    "MODEL.BACKBONE.DEPTH",
    "18x",
    "MODEL.BACKBONE.FEAT_DIM",
    "512",
    "MODEL.BACKBONE.PRETRAIN",
    "False",
    "MODEL.LOSSES.NAME",
    "('CrossEntropyLoss', 'TripletLoss')",
    "MODEL.LOSSES.CE.EPSILON",
    "0.1",
    "MODEL.LOSSES.TRI.MINING",
    "batch_hard",
    "MODEL.HEADS.WITH_BNNECK",
    "True",
    "INPUT.SIZE_TRAIN",
    "[32, 16]",
    "INPUT.SIZE_TEST",
    "[32, 16]",
    "INPUT.FLIP.ENABLED",
    "True",
    "DATALOADER.SAMPLER_TRAIN",
    "NaiveIdentitySampler",
    "DATALOADER.EPOCH_LENGTH",
    "identities",
    "DATALOADER.NUM_INSTANCE",
    "4",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "8",
    "SOLVER.MAX_EPOCH",
    "2",
    "SOLVER.BASE_LR",
    "0.00035",
    "SOLVER.SCHED_CLOCK",
    "from_start",
    "SOLVER.STEPS",
    "[1]",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.CHECKPOINT_PERIOD",
    "1",
    "TEST.EVAL_PERIOD",
    "2",
    "TEST.IMS_PER_BATCH",
    "16",
    "LOG_PERIOD",
    "1",
]


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_logging():
    """Runs call setup_logger (own handlers, no propagation): undo it, so caplog works in later
    tests."""
    yield
    logging.captureWarnings(False)
    for name in ("reid", "py.warnings"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> str:
    """One data root for the session: the tiny synthetic set is generated there once."""
    return str(tmp_path_factory.mktemp("datasets"))


@pytest.fixture
def tiny_opts(synthetic_root) -> list:
    """The tiny run's command-line overrides, with the session's data root."""
    return [*TINY_OPTS, "DATASETS.ROOT", synthetic_root]


@pytest.fixture
def tiny_cfg(tmp_path, synthetic_root) -> Callable[..., object]:
    """``tiny_cfg(*opts, config_file=None)``: the tiny run's config (fresh OUTPUT_DIR) plus
    ``opts``."""

    def make(*opts: str, config_file: str = None, output: str = "out"):
        return load_config(
            config_file,
            [
                *TINY_OPTS,
                "DATASETS.ROOT",
                synthetic_root,
                "OUTPUT_DIR",
                str(tmp_path / output),
                *opts,
            ],
        )

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_root) -> str:
    """A finished tiny training run, as tools/train_net.py leaves it (config.yaml, model_final.pth,
    results.json, ...): one epoch of the tiny config with flip-averaged test features. For the
    tools and examples that start from a trained run."""
    from reid.engine import DefaultTrainer, default_setup

    folder = str(tmp_path_factory.mktemp("tiny_run"))
    opts = [*TINY_OPTS, "DATASETS.ROOT", synthetic_root, "OUTPUT_DIR", folder]
    opts += ["SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "1", "TEST.FLIP.ENABLED", "True"]
    torch.manual_seed(0)
    trainer = DefaultTrainer(default_setup(load_config(None, opts)))
    trainer.resume_or_load(resume=False)
    trainer.train()
    return folder


@pytest.fixture
def faiss_module() -> ModuleType:
    """The faiss module. Where it is not installed the test is skipped, except under CI (CI=true),
    which installs the faiss extra (.ci/run): there a missing faiss fails the test."""
    try:
        import faiss
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("faiss is not installed: CI installs the faiss extra (.ci/run)")
        pytest.skip("faiss is not installed (pip install -e '.[faiss]')")
    return faiss
