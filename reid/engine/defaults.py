"""The default trainer and the setup shared by the command-line tools."""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from reid.config import load_config
from reid.config.schema import ConfigBlock, Key, declare
from reid.data.build import build_reid_test_loader, build_reid_train_loader
from reid.data.datasets import build_train_records
from reid.data.samplers import sampler_class
from reid.evaluation.evaluator import (
    EvalSettings,
    ReidEvaluator,
    format_results_table,
    inference_on_dataset,
)
from reid.modeling import build_model
from reid.modeling.summary import describe_model
from reid.solver import WarmupLRScheduler, build_optimizer, describe_schedule
from reid.solver.stages import Stage, StagedSchedule, build_training_plan
from reid.utils import comm
from reid.utils.checkpoint import (
    Checkpointer,
    completed_epochs,
    load_checkpoint_file,
    load_state_strict,
)
from reid.utils.env import collect_env_info, draw_seed, seed_all_rng
from reid.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardWriter
from reid.utils.file_io import atomic_write_json, atomic_write_text
from reid.utils.logger import setup_logger

from . import hooks
from .train_loop import HookBase, ModelWithLoss, SimpleTrainer, StepOptions

logger = logging.getLogger(__name__)


RUN_CONFIG = declare(
    ConfigBlock(
        "",
        "The run: seed, output folder, logging period.",
        {
            "SEED": Key(
                0,
                (
                    "Seed for Python, NumPy and torch RNGs, the samplers and the synthetic data "
                    "draw. A negative value draws a random seed at start (written to "
                    "OUTPUT_DIR/config.yaml)."
                ),
            ),
            "OUTPUT_DIR": Key(
                "logs/",
                "Where logs, checkpoints, metrics and the merged config go.",
            ),
            "CUDNN_BENCHMARK": Key(
                False,
                (
                    "torch.backends.cudnn.benchmark: let cuDNN pick the fastest convolution "
                    "algorithms (input sizes are fixed in ReID)."
                ),
            ),
            "LOG_PERIOD": Key(
                20,
                (
                    "Write training scalars (console, OUTPUT_DIR/metrics.json, TensorBoard) every"
                    " N iterations."
                ),
            ),
        },
    )
)

FREEZE_CONFIG = declare(
    ConfigBlock(
        "",
        ("Freezing layers at the start of training (fastreid's FREEZE_LAYERS / FREEZE_ITERS)."),
        {
            "MODEL.FREEZE_LAYERS": Key(
                [],
                (
                    'Names of the meta-architecture\'s modules (e.g. "backbone"; dotted paths '
                    "allowed) frozen for the first SOLVER.FREEZE_ITERS iterations: no updates, "
                    "normalisation statistics kept (fastreid's meaning)."
                ),
            ),
            "SOLVER.FREEZE_ITERS": Key(
                0,
                (
                    "MODEL.FREEZE_LAYERS stay frozen (no updates, norm statistics kept) for the "
                    "first FREEZE_ITERS iterations."
                ),
            ),
        },
    )
)

STEP_CONFIG = declare(
    ConfigBlock(
        "SOLVER",
        (
            "How each optimisation step runs: mixed precision, clipping, EMA, "
            "accumulation; checkpoint period."
        ),
        {
            "AMP.ENABLED": Key(
                False,
                "Mixed precision (autocast) for the forward pass and the losses.",
            ),
            "AMP.DTYPE": Key(
                "float16",
                '"float16" (with a gradient scaler, checkpointed) or "bfloat16".',
            ),
            "CHANNELS_LAST": Key(
                False,
                "Channels-last memory format for model and images on CUDA.",
            ),
            "CLIP_GRADIENTS.ENABLED": Key(
                False,
                "Clip the gradients before each optimizer step.",
            ),
            "CLIP_GRADIENTS.CLIP_TYPE": Key(
                "norm",
                (
                    '"norm" (rescale so the total norm is at most CLIP_VALUE) or "value" (clamp '
                    "each element to +-CLIP_VALUE)."
                ),
            ),
            "CLIP_GRADIENTS.CLIP_VALUE": Key(
                5.0,
                "The norm or value limit.",
            ),
            "CLIP_GRADIENTS.NORM_TYPE": Key(
                2.0,
                'p of the p-norm for CLIP_TYPE "norm".',
            ),
            "EMA.ENABLED": Key(
                False,
                (
                    "Keep an exponential moving average of the weights (buffers copied); "
                    "evaluation then uses it."
                ),
            ),
            "EMA.DECAY": Key(
                0.9999,
                "Weight of the old average at every step.",
            ),
            "GRAD_ACCUM_STEPS": Key(
                1,
                (
                    "Split each batch into this many identity-complete micro-batches and "
                    "accumulate their gradients (for batches that do not fit in memory; "
                    "batch-level losses then see P / GRAD_ACCUM_STEPS identities)."
                ),
            ),
            "CHECKPOINT_PERIOD": Key(
                20,
                "Save a checkpoint every N epochs (the last one is always saved).",
            ),
        },
    )
)

EVAL_PERIOD_CONFIG = declare(
    ConfigBlock(
        "TEST",
        "When the trainer evaluates.",
        {
            "EVAL_PERIOD": Key(
                20,
                "Evaluate every N epochs (and after the last); 0 = only after the last.",
            ),
        },
    )
)


def default_argument_parser(
    description: str = "reid training and evaluation",
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the YAML config")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in OUTPUT_DIR"
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="processes per machine (GPUs; CPU processes with gloo)",
    )
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument(
        "--machine-rank",
        type=int,
        default=0,
        help="the rank of this machine (0 .. num-machines - 1)",
    )
    parser.add_argument(
        "--dist-url",
        default="tcp://127.0.0.1:29500",
        help="init URL of the process group (multi-machine: the first machine's address)",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module first, e.g. one that registers out-of-tree components (repeatable)",
    )
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs"
    )
    return parser


def _agreed_seed(seed: int) -> int:
    """SEED < 0 draws a seed; all processes use rank 0's so samplers stay in step."""
    if seed >= 0:
        return seed
    seeds = [draw_seed()]
    if comm.get_world_size() > 1:
        torch.distributed.broadcast_object_list(seeds, src=0)
    return seeds[0]


def default_setup(cfg: CfgNode, args: argparse.Namespace | None = None) -> CfgNode:
    """Logger, seed, environment report and OUTPUT_DIR/config.yaml; returns the frozen config."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SEED = _agreed_seed(cfg.SEED)
    cfg.freeze()
    rank = comm.get_rank()
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    comm.synchronize()
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=rank)
    logger.info("Rank %d of %d; environment:\n%s", rank, comm.get_world_size(), collect_env_info())
    if args is not None:
        logger.info("Command line arguments: %s", vars(args))
    if comm.is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
        atomic_write_text(path, cfg.dump())
        logger.info("Full config saved to %s", path)
    seed_all_rng(cfg.SEED + rank)
    torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
    return cfg


def setup(args: argparse.Namespace) -> CfgNode:
    """The run's config from the command line: ``--import`` modules, the file, the overrides."""
    for module in getattr(args, "imports", None) or []:
        importlib.import_module(module)
    return default_setup(load_config(args.config_file or None, args.opts or []), args)


def with_num_classes(cfg: CfgNode, num_classes: int) -> CfgNode:
    configured = cfg.MODEL.HEADS.NUM_CLASSES
    if configured and configured != num_classes:
        logger.warning(
            "MODEL.HEADS.NUM_CLASSES is %d but the training set has %d identities: using %d",
            configured,
            num_classes,
            num_classes,
        )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.freeze()
    return cfg


class DefaultTrainer(SimpleTrainer):
    """Builds everything from the config: data, model, optimizer, schedule, checkpointer and hooks.

    Every part comes from an overridable ``build_*`` classmethod (or method, for the parts that
    need the trainer), so a subclass swaps one piece without rewriting the rest:

        class MyTrainer(DefaultTrainer):
            @classmethod
            def build_optimizer(cls, cfg, model):
                return torch.optim.SGD(model.parameters(), lr=cfg.SOLVER.BASE_LR)

    Args:
        cfg: The run's config (``default_setup`` output); MODEL.HEADS.NUM_CLASSES is set from the
            training set.
    """

    checkpointer: Checkpointer

    def __init__(self, cfg: CfgNode) -> None:
        for name in cfg.DATASETS.TESTS:  # a bad TEST key fails now, not after training
            EvalSettings.from_config(cfg, name)
        data_loader, num_classes = self.build_train_loader(cfg)
        cfg = with_num_classes(cfg, num_classes)
        iters_per_epoch = len(data_loader)
        if iters_per_epoch == 0:
            raise ValueError(
                f"the training set gives no full batch of SOLVER.IMS_PER_BATCH="
                f"{cfg.SOLVER.IMS_PER_BATCH} images per epoch"
            )
        self.plan = build_training_plan(cfg)
        model = self.build_model(cfg)
        options = self.build_step_options(cfg, model)
        if options.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = self.build_optimizer(cfg, model)
        super().__init__(
            model,
            data_loader,
            optimizer,
            seed=cfg.SEED,
            train_module=self.wrap_distributed(ModelWithLoss(model)),
            options=options,
        )
        self.cfg = cfg
        self.iters_per_epoch = iters_per_epoch
        self.scheduler = self.build_lr_scheduler(cfg, optimizer, self.plan, iters_per_epoch)
        self.ema_model = self.build_ema(cfg, model)
        self.checkpointer = self.build_checkpointer(cfg, num_classes)
        self.start_epoch = 0
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> tuple[DataLoader, int]:
        """The training loader and the number of training identities."""
        return build_reid_train_loader(cfg)

    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        """The model of MODEL.META_ARCHITECTURE on MODEL.DEVICE."""
        model = build_model(cfg)
        logger.info("Model:\n%s", model)
        log_model_summary(cfg, model)
        return model

    @classmethod
    def build_step_options(cls, cfg: CfgNode, model: nn.Module) -> StepOptions:
        """AMP, gradient scaler, clipping, accumulation and channels-last."""
        return build_step_options(cfg, model)

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        """SOLVER.OPT over the model's parameter groups."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(
        cls,
        cfg: CfgNode,
        optimizer: torch.optim.Optimizer,
        plan: list[Stage],
        iters_per_epoch: int,
    ) -> WarmupLRScheduler:
        """The per-iteration LR schedule of the training plan; logs it as a table."""
        schedule = StagedSchedule(cfg, plan, iters_per_epoch)
        if len(plan) > 1:
            logger.info("Training plan:\n%s", "\n".join(stage.describe() for stage in plan))
        logger.info("LR schedule:\n%s", describe_schedule(cfg, iters_per_epoch, schedule))
        return WarmupLRScheduler(optimizer, schedule)

    @classmethod
    def build_ema(cls, cfg: CfgNode, model: nn.Module) -> AveragedModel | None:
        """The exponential moving average of the weights (SOLVER.EMA), or None."""
        if not cfg.SOLVER.EMA.ENABLED:
            return None
        return AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(cfg.SOLVER.EMA.DECAY), use_buffers=True
        )

    def build_checkpointer(self, cfg: CfgNode, num_classes: int) -> Checkpointer:
        """Saves the model with the optimizer, scheduler, scaler and EMA states into OUTPUT_DIR."""
        checkpointables: dict[str, Any] = {"optimizer": self.optimizer, "scheduler": self.scheduler}
        if self.options.grad_scaler is not None:
            checkpointables["grad_scaler"] = self.options.grad_scaler
        if self.ema_model is not None:
            checkpointables["ema"] = self.ema_model
        return Checkpointer(
            self.model,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            meta={"num_classes": num_classes},
            **checkpointables,
        )

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> tuple[DataLoader, int]:
        """A loader over the query then gallery images of a test set, and the number of queries."""
        return build_reid_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, num_query: int) -> ReidEvaluator:
        """The evaluator of one test set; it writes OUTPUT_DIR/inference/<dataset>.json."""
        return ReidEvaluator(cfg, num_query, output_dir=cfg.OUTPUT_DIR, dataset_name=dataset_name)

    @staticmethod
    def wrap_distributed(module: nn.Module) -> nn.Module:
        """DDP over the model-with-loss when several processes run; find_unused_parameters because
        stages and frozen layers leave parameters without gradients."""
        if comm.get_world_size() == 1:
            return module
        device = next(module.parameters()).device
        return nn.parallel.DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
            find_unused_parameters=True,
        )

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from OUTPUT_DIR's last checkpoint (with ``resume``), else load MODEL.WEIGHTS
        if set."""
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if "epoch" in extra:
            self.start_epoch = completed_epochs(extra)
            self.load_hooks_state_dict(_legacy_hook_states(extra.get("hooks", {})))

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.cfg.SOLVER.MAX_EPOCH, self.iters_per_epoch)

    def build_writers(self) -> list[EventWriter]:
        """Console, OUTPUT_DIR/metrics.json and TensorBoard writers."""
        return [
            CommonMetricPrinter(
                self.cfg.SOLVER.MAX_EPOCH * self.iters_per_epoch, self.iters_per_epoch
            ),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")),
            TensorboardWriter(os.path.join(self.cfg.OUTPUT_DIR, "tensorboard")),
        ]

    def build_hooks(self) -> list[HookBase | None]:
        """The default hooks, in the order they run."""
        cfg = self.cfg
        main = comm.is_main_process()
        first_test_set = cfg.DATASETS.TESTS[0] if cfg.DATASETS.TESTS else ""

        def evaluate() -> Mapping[str, Mapping[str, float]]:
            model = self.ema_model.module if self.ema_model is not None else self.model
            return self.test(cfg, model, epoch=self.epoch + 1)

        return [
            hooks.TrainingPlan(
                self.model, self.plan, cfg.MODEL.FREEZE_LAYERS, cfg.SOLVER.FREEZE_ITERS
            ),
            hooks.LRScheduler(self.optimizer, self.scheduler),
            hooks.EMA(self.ema_model, self.model) if self.ema_model is not None else None,
            hooks.EvalHook(cfg.TEST.EVAL_PERIOD, evaluate),
            hooks.BestCheckpointer(self.checkpointer, f"{first_test_set}/metric"),
            hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD),
            hooks.PeriodicWriter(self.build_writers(), period=cfg.LOG_PERIOD) if main else None,
            hooks.ProgressBar() if main else None,
        ]

    @classmethod
    def test(
        cls, cfg: CfgNode, model: nn.Module, epoch: int | None = None
    ) -> dict[str, dict[str, float]]:
        """Evaluate on every DATASETS.TESTS set; prints a table and writes OUTPUT_DIR/results.json.

        Args:
            cfg: The config (DATASETS.TESTS, TEST.*, OUTPUT_DIR).
            model: The model to evaluate.
            epoch: The number of completed training epochs, recorded in results.json.

        Returns:
            {test set: {metric: value in percent}} (empty on processes other than the main one).
        """
        results: dict[str, dict[str, float]] = OrderedDict()
        for name in cfg.DATASETS.TESTS:
            loader, num_query = cls.build_test_loader(cfg, name)
            evaluator = cls.build_evaluator(cfg, name, num_query)
            results[name] = inference_on_dataset(
                model, loader, evaluator, flip=cfg.TEST.FLIP.ENABLED
            )
        if comm.is_main_process():
            after = "" if epoch is None else f" after epoch {epoch}"
            logger.info("Evaluation results%s:\n%s", after, format_results_table(results))
            atomic_write_json(
                os.path.join(cfg.OUTPUT_DIR, "results.json"), {"epoch": epoch, "results": results}
            )
        return results


def _legacy_hook_states(states: Mapping[str, Any]) -> dict[str, Any]:
    """Hook states of checkpoints written before the best checkpoint had its own hook."""
    states = dict(states)
    if "EvalHook" in states and "BestCheckpointer" not in states:
        old = states.pop("EvalHook")
        states["BestCheckpointer"] = {
            "best_metric": old["best_metric"],
            "best_epoch": int(old["best_epoch"]) + 1,
        }
    return states


AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def build_step_options(cfg: CfgNode, model: nn.Module) -> StepOptions:
    """AMP, gradient scaler, clipping, accumulation and channels-last from cfg.SOLVER."""
    s = cfg.SOLVER
    device = next(model.parameters()).device
    amp_dtype = None
    if s.AMP.ENABLED:
        if s.AMP.DTYPE not in AMP_DTYPES:
            raise ValueError(
                f"SOLVER.AMP.DTYPE must be one of {sorted(AMP_DTYPES)}, got {s.AMP.DTYPE!r}"
            )
        amp_dtype = AMP_DTYPES[s.AMP.DTYPE]
        if device.type != "cuda":
            logger.warning(
                "SOLVER.AMP.ENABLED on %s: autocast runs there too, "
                "but mixed precision is meant for CUDA",
                device,
            )
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    clip: Callable[[list[torch.Tensor]], object] | None = None
    c = s.CLIP_GRADIENTS
    if c.ENABLED:
        if c.CLIP_TYPE == "norm":
            clip = functools.partial(
                torch.nn.utils.clip_grad_norm_, max_norm=c.CLIP_VALUE, norm_type=c.NORM_TYPE
            )
        elif c.CLIP_TYPE == "value":
            clip = functools.partial(torch.nn.utils.clip_grad_value_, clip_value=c.CLIP_VALUE)
        else:
            raise ValueError(
                f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be 'norm' or 'value', got {c.CLIP_TYPE!r}"
            )

    accum = s.GRAD_ACCUM_STEPS
    per_rank = s.IMS_PER_BATCH // comm.get_world_size()
    if accum < 1 or per_rank % accum != 0:
        raise ValueError(
            f"SOLVER.GRAD_ACCUM_STEPS ({accum}) must be >= 1 and divide the per-process batch "
            f"({per_rank} images)"
        )
    if (
        sampler_class(cfg.DATALOADER.SAMPLER_TRAIN).identity_batches
        and (per_rank // accum) % cfg.DATALOADER.NUM_INSTANCE != 0
    ):
        raise ValueError(
            f"SOLVER.GRAD_ACCUM_STEPS ({accum}) must leave micro-batches of whole identities: "
            f"{per_rank} / {accum} images is not a multiple of DATALOADER.NUM_INSTANCE "
            f"({cfg.DATALOADER.NUM_INSTANCE})"
        )
    channels_last = s.CHANNELS_LAST and device.type == "cuda"
    return StepOptions(
        amp_dtype=amp_dtype,
        grad_scaler=scaler,
        clip_gradients=clip,
        accum_steps=accum,
        channels_last=channels_last,
    )


def build_model_for_eval(cfg: CfgNode) -> nn.Module:
    """The model of MODEL.WEIGHTS, with the classifier size taken from the checkpoint or the
    training set."""
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("--eval-only needs MODEL.WEIGHTS: the checkpoint to evaluate")
    checkpoint = load_checkpoint_file(cfg.MODEL.WEIGHTS)
    num_classes = int(checkpoint.get("num_classes", 0)) or cfg.MODEL.HEADS.NUM_CLASSES
    if not num_classes:
        num_classes = build_train_records(cfg)[1]
    model = build_model(with_num_classes(cfg, num_classes))
    load_state_strict(model, checkpoint["model"], source=cfg.MODEL.WEIGHTS)
    log_model_summary(cfg, model)
    return model


def log_model_summary(cfg: CfgNode, model: nn.Module) -> None:
    """Log the parameters and the GFLOPs of one INPUT.SIZE_TEST image (training and eval-only)."""
    summary = describe_model(model, cfg.INPUT.SIZE_TEST, flip=cfg.TEST.FLIP.ENABLED)
    logger.info("Model summary: %s", summary)
