"""The default trainer and the setup shared by the command-line tools."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from reid.config import load_config
from reid.config.schema import ConfigBlock, ConfigError, Key, declare
from reid.data.build import build_reid_test_loader, build_reid_train_loader, check_test_set
from reid.data.datasets import build_train_records
from reid.data.datasets.bases import Record
from reid.data.loader import TrainLoader
from reid.data.samplers import sampler_class
from reid.evaluation.evaluator import (
    EvalSettings,
    ReidEvaluator,
    format_results_table,
    inference_amp_dtype,
    inference_on_dataset,
)
from reid.evaluation.gallery_draws import check_gallery_draws
from reid.modeling import build_model
from reid.modeling.summary import describe_model
from reid.solver import WarmupLRScheduler, build_optimizer, describe_schedule
from reid.solver.stages import Stage, StagedSchedule, build_training_plan
from reid.utils import comm
from reid.utils.checkpoint import (
    Checkpointer,
    ExistingRunError,
    check_new_run,
    checkpoint_num_classes,
    completed_epochs,
    load_checkpoint_file,
    load_model_weights,
)
from reid.utils.env import collect_env_info, draw_seed, seed_all_rng
from reid.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardWriter
from reid.utils.file_io import atomic_write_json, atomic_write_text, remove_stale_temp_files
from reid.utils.logger import setup_logger
from reid.utils.run_lock import OutputDirInUseError, acquire_output_dir, release_output_dir
from reid.visualization.report import check_visualize_config, visualize_test_sets

from . import hooks
from .launch import DEFAULT_GLOO_TIMEOUT_S, DEFAULT_NCCL_TIMEOUT_S
from .precise_bn import PreciseBN, batchnorm_layers, precise_bn_config
from .train_loop import HookBase, LossGuard, ModelWithLoss, SimpleTrainer, StepOptions

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


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
                (
                    "Channels-last memory format for the model and its images, in training and "
                    "evaluation (faster convolutions on tensor-core GPUs; any device)."
                ),
            ),
            "COMPILE.ENABLED": Key(
                False,
                (
                    "torch.compile the training step's module: the model's forward and its "
                    "losses, in one graph (the first steps compile; evaluation stays eager)."
                ),
            ),
            "COMPILE.MODE": Key(
                "default",
                'torch.compile mode: "default", "reduce-overhead" or "max-autotune".',
            ),
            "COMPILE.BACKEND": Key(
                "inductor",
                'torch.compile backend: "inductor" (generated kernels) or a debugging one '
                '("aot_eager", "eager").',
            ),
            "CLIP_GRADIENTS.ENABLED": Key(
                False,
                "Clip the gradients before each optimizer step.",
            ),
            "CLIP_GRADIENTS.CLIP_TYPE": Key(
                "norm",
                (
                    "\"norm\" (fastreid's: rescale each parameter's gradient so that its norm is "
                    'at most CLIP_VALUE), "total_norm" (rescale all gradients together so that '
                    'their joint norm is at most CLIP_VALUE) or "value" (clamp each element to '
                    "+-CLIP_VALUE)."
                ),
            ),
            "CLIP_GRADIENTS.CLIP_VALUE": Key(
                5.0,
                "The norm or value limit.",
            ),
            "CLIP_GRADIENTS.NORM_TYPE": Key(
                2.0,
                'p of the p-norm for CLIP_TYPE "norm" and "total_norm".',
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
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest loadable checkpoint in OUTPUT_DIR",
    )
    start.add_argument(
        "--start-over",
        action="store_true",
        help="start from scratch although OUTPUT_DIR holds a run's checkpoints (they are moved "
        "to OUTPUT_DIR/previous_<date-time>/)",
    )
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="only evaluate MODEL.WEIGHTS; writes into OUTPUT_DIR/eval/<weights file name>/",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
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
        "--dist-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a process waits for the others in a collective operation before failing "
        f"with the ranks that did not respond (default {DEFAULT_GLOO_TIMEOUT_S:g} with gloo on "
        f"CPUs, {DEFAULT_NCCL_TIMEOUT_S:g} with NCCL)",
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


def default_setup(
    cfg: CfgNode, args: argparse.Namespace | None = None, new_run: bool = False
) -> CfgNode:
    """OUTPUT_DIR and its lock, logger, seed, environment report and OUTPUT_DIR/config.yaml;
    returns the frozen config.

    Args:
        cfg: The run's config.
        args: The command line, logged.
        new_run: The run starts from scratch: an OUTPUT_DIR that holds another run's checkpoints
            is an error before anything there is written (see :class:`ExistingRunError`).

    Raises:
        ConfigError: OUTPUT_DIR is a file or cannot be created.
        OutputDirInUseError: Another process holds OUTPUT_DIR's lock.
        ExistingRunError: ``new_run`` and OUTPUT_DIR holds checkpoints.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SEED = _agreed_seed(cfg.SEED)
    cfg.freeze()
    rank = comm.get_rank()
    taken_over = _claim_output_dir(cfg.OUTPUT_DIR, new_run)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=rank)
    if taken_over:
        logger.warning("%s", taken_over)
    if comm.is_main_process():
        for folder in (cfg.OUTPUT_DIR, os.path.join(cfg.OUTPUT_DIR, "inference")):
            remove_stale_temp_files(folder)
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


def _claim_output_dir(output_dir: str, new_run: bool) -> str | None:
    """Create OUTPUT_DIR and take its lock on the main process (with ``new_run``, refuse a folder
    with checkpoints); every process raises the same error when that fails. Returns the message
    about a dead run's lock taken over, if any."""
    error: str | None = None
    taken_over: str | None = None
    if comm.is_main_process():
        try:
            if os.path.exists(output_dir) and not os.path.isdir(output_dir):
                raise ConfigError(
                    f"OUTPUT_DIR {output_dir} is a file, not a folder: choose another OUTPUT_DIR "
                    f"(or move the file away)"
                )
            try:
                os.makedirs(output_dir, exist_ok=True)
            except OSError as e:
                raise ConfigError(
                    f"OUTPUT_DIR {output_dir} cannot be created ({e.strerror}): choose a folder "
                    f"you can write to"
                ) from None
            taken_over = acquire_output_dir(output_dir)
            if new_run:
                try:
                    check_new_run(output_dir)
                except ExistingRunError:
                    release_output_dir(output_dir)
                    raise
        except (ConfigError, OutputDirInUseError, ExistingRunError) as e:
            if comm.get_world_size() == 1:
                raise
            error = f"{type(e).__name__}: {e}"
    error = comm.broadcast_object(error)
    if error is not None:
        raise RuntimeError(error)
    return taken_over


def eval_only_output_dir(cfg: CfgNode) -> str:
    """Where ``--eval-only`` writes: OUTPUT_DIR/eval/<MODEL.WEIGHTS file name without .pth>/, so a
    training run's config.yaml, log and results.json are never touched."""
    name = os.path.splitext(os.path.basename(cfg.MODEL.WEIGHTS))[0] or "weights"
    return os.path.join(cfg.OUTPUT_DIR, "eval", name)


def setup(args: argparse.Namespace) -> CfgNode:
    """The run's config from the command line: ``--import`` modules, the file, the overrides.

    With ``--eval-only``, OUTPUT_DIR becomes :func:`eval_only_output_dir`; without it, ``--resume``
    or ``--start-over``, an OUTPUT_DIR with checkpoints is refused before anything is written.
    """
    for module in getattr(args, "imports", None) or []:
        importlib.import_module(module)
    cfg = load_config(args.config_file or None, args.opts or [])
    eval_only = getattr(args, "eval_only", False)
    if eval_only:
        if not cfg.MODEL.WEIGHTS:
            raise ConfigError("--eval-only needs MODEL.WEIGHTS: the checkpoint to evaluate")
        cfg.OUTPUT_DIR = eval_only_output_dir(cfg)
    resumed = getattr(args, "resume", False) or getattr(args, "start_over", False)
    return default_setup(cfg, args, new_run=not (eval_only or resumed))


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
        for name in cfg.DATASETS.TESTS:  # a bad TEST key or test set fails now, not after training
            EvalSettings.from_config(cfg, name)
            check_test_set(cfg, name)
        check_visualize_config(cfg)
        check_gallery_draws(cfg)
        inference_amp_dtype(cfg)
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
            train_module=compile_module(cfg, self.wrap_distributed(ModelWithLoss(model))),
            options=options,
            log_period=cfg.LOG_PERIOD,
            loss_guard=LossGuard(cfg),
        )
        self.cfg = cfg
        self.iters_per_epoch = iters_per_epoch
        self.scheduler = self.build_lr_scheduler(cfg, optimizer, self.plan, iters_per_epoch)
        self.ema_model = self.build_ema(cfg, model)
        self.checkpointer = self.build_checkpointer(cfg, num_classes)
        self.start_epoch = 0
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> tuple[TrainLoader | DataLoader, int]:
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
            run_outputs=(RESULTS_FILE,),
            **checkpointables,
        )

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> tuple[DataLoader, int]:
        """A loader over the query then gallery images of a test set, and the number of queries."""
        return build_reid_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(
        cls,
        cfg: CfgNode,
        dataset_name: str,
        num_query: int,
        records: Sequence[Record] | None = None,
    ) -> ReidEvaluator:
        """The evaluator of one test set; it writes OUTPUT_DIR/inference/<dataset>.json.

        ``records``: the test loader's images, from which TEST.GALLERY_DRAWS draws the galleries
        of a test set whose gallery is a random draw.
        """
        return ReidEvaluator(
            cfg,
            num_query,
            output_dir=cfg.OUTPUT_DIR,
            dataset_name=dataset_name,
            records=records,
        )

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

    def resume_or_load(self, resume: bool = True, start_over: bool = False) -> None:
        """Resume from OUTPUT_DIR's newest loadable checkpoint (with ``resume``), else load
        MODEL.WEIGHTS if set; see :meth:`Checkpointer.resume_or_load` (``start_over``: start from
        scratch although OUTPUT_DIR holds checkpoints, moving them aside)."""
        extra = self.checkpointer.resume_or_load(
            self.cfg.MODEL.WEIGHTS, resume=resume, start_over=start_over
        )
        if "epoch" in extra:
            self.start_epoch = completed_epochs(extra)
            self.load_hooks_state_dict(_legacy_hook_states(extra.get("hooks", {})))

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.cfg.SOLVER.MAX_EPOCH, self.iters_per_epoch)
        if self.cfg.TEST.VISUALIZE.ENABLED:
            self.visualize()

    def visualize(self) -> None:
        """Rank lists and figures of the evaluated model (the EMA when on) into
        OUTPUT_DIR/visualize/, as TEST.VISUALIZE says."""
        model = self.ema_model.module if self.ema_model is not None else self.model
        visualize_test_sets(
            self.cfg,
            model,
            os.path.join(self.cfg.OUTPUT_DIR, "visualize"),
            build_test_loader=self.build_test_loader,
            source=f"{self.cfg.OUTPUT_DIR} after training",
        )

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

        def evaluate(epoch: int) -> Mapping[str, Mapping[str, float]]:
            model = self.ema_model.module if self.ema_model is not None else self.model
            return self.test(cfg, model, epoch=epoch)

        def recorded(epoch: int) -> Mapping[str, Mapping[str, float]] | None:
            results = read_results(cfg.OUTPUT_DIR) if comm.is_main_process() else None
            if results is None or results.get("epoch") != epoch:
                results = None
            return comm.broadcast_object(results["results"] if results is not None else None)

        # The checkpoint first: evaluation and reports can fail, the epoch's weights stay safe.
        checkpoints = hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD)
        return [
            hooks.TrainingPlan(
                self.model, self.plan, cfg.MODEL.FREEZE_LAYERS, cfg.SOLVER.FREEZE_ITERS
            ),
            hooks.LRScheduler(self.optimizer, self.scheduler),
            hooks.EMA(self.ema_model, self.model) if self.ema_model is not None else None,
            # Before the checkpoint, so the saved and the evaluated statistics are the same.
            self.build_precise_bn(cfg),
            checkpoints,
            hooks.EvalHook(cfg.TEST.EVAL_PERIOD, evaluate, checkpoints.save_epoch, recorded),
            hooks.BestCheckpointer(self.checkpointer, f"{first_test_set}/metric"),
            hooks.PeriodicWriter(self.build_writers(), period=cfg.LOG_PERIOD) if main else None,
            hooks.ProgressBar() if main else None,
        ]

    def build_precise_bn(self, cfg: CfgNode) -> PreciseBN | None:
        """TEST.PRECISE_BN's hook, None when off: recomputes the BatchNorm statistics of the
        evaluated model (the moving average with SOLVER.EMA) before every evaluation, over
        batches of the training loader of TEST.PRECISE_BN.DATASET.

        Raises:
            ConfigError: The model has no BatchNorm layer, or a TEST.PRECISE_BN value is invalid.
        """
        if not cfg.TEST.PRECISE_BN.ENABLED:
            return None
        if not batchnorm_layers(self.model):
            raise ConfigError(
                "TEST.PRECISE_BN.ENABLED is True but the model has no BatchNorm layer with "
                "running statistics to recompute"
            )
        loader, _ = self.build_train_loader(precise_bn_config(cfg))
        target = self.ema_model.module if self.ema_model is not None else self.model
        return PreciseBN(
            target,
            loader,
            num_iter=cfg.TEST.PRECISE_BN.NUM_ITER,
            period=cfg.TEST.EVAL_PERIOD,
            reference=self.model,
        )

    @classmethod
    def test(
        cls, cfg: CfgNode, model: nn.Module, epoch: int | None = None
    ) -> dict[str, dict[str, float]]:
        """Evaluate on every DATASETS.TESTS set; prints a table and writes OUTPUT_DIR/results.json
        (``{"epoch": ..., "results": {test set: metrics}}``, and ``"gallery_draws": {test set: N}``
        for the sets whose numbers are the mean of N > 1 gallery draws, TEST.GALLERY_DRAWS).

        Args:
            cfg: The config (DATASETS.TESTS, TEST.*, OUTPUT_DIR).
            model: The model to evaluate.
            epoch: The number of completed training epochs, recorded in results.json.

        Returns:
            {test set: {metric: value in percent}} (empty on processes other than the main one).
        """
        results: dict[str, dict[str, float]] = OrderedDict()
        draws: dict[str, int] = {}
        amp_dtype = inference_amp_dtype(cfg)
        if cfg.SOLVER.CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        for name in cfg.DATASETS.TESTS:
            loader, num_query = cls.build_test_loader(cfg, name)
            records = getattr(loader.dataset, "records", None)
            evaluator = cls.build_evaluator(cfg, name, num_query, records=records)
            results[name] = inference_on_dataset(
                model,
                loader,
                evaluator,
                flip=cfg.TEST.FLIP.ENABLED,
                amp_dtype=amp_dtype,
                channels_last=cfg.SOLVER.CHANNELS_LAST,
            )
            if evaluator.num_draws > 1:
                draws[name] = evaluator.num_draws
        if comm.is_main_process():
            after = "" if epoch is None else f" after epoch {epoch}"
            averaged = "".join(
                f"\n{name}: the mean of {n} gallery draws (seeds 0..{n - 1})"
                for name, n in draws.items()
            )
            logger.info(
                "Evaluation results%s:\n%s%s", after, format_results_table(results), averaged
            )
            content: dict[str, Any] = {"epoch": epoch, "results": results}
            if draws:
                content["gallery_draws"] = draws
            atomic_write_json(os.path.join(cfg.OUTPUT_DIR, RESULTS_FILE), content)
        return results


def read_results(output_dir: str) -> dict[str, Any] | None:
    """``OUTPUT_DIR/results.json``: ``{"epoch": N, "results": {test set: metrics}}``.

    Returns:
        The results, or None if the file is absent or unreadable (logged).
    """
    path = os.path.join(output_dir, RESULTS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        logger.warning("Cannot read %s (%s): treating its evaluation as not done", path, e)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        logger.warning("%s has no 'results' mapping: treating its evaluation as not done", path)
        return None
    return data


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


def clip_grad_norm_per_parameter(
    params: list[torch.Tensor], max_norm: float, norm_type: float = 2.0
) -> None:
    """Rescale each parameter's gradient on its own so that its norm is at most ``max_norm``
    (fastreid's CLIP_TYPE "norm", a per-parameter clipper).

    >>> a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
    >>> a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.5])
    >>> clip_grad_norm_per_parameter([a, b], max_norm=1.0)
    >>> [round(g, 4) for g in a.grad.tolist()], b.grad.tolist()
    ([0.6, 0.8], [0.5])
    """
    for p in params:
        torch.nn.utils.clip_grad_norm_(p, max_norm=max_norm, norm_type=norm_type)


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
                clip_grad_norm_per_parameter, max_norm=c.CLIP_VALUE, norm_type=c.NORM_TYPE
            )
        elif c.CLIP_TYPE == "total_norm":
            clip = functools.partial(
                torch.nn.utils.clip_grad_norm_, max_norm=c.CLIP_VALUE, norm_type=c.NORM_TYPE
            )
        elif c.CLIP_TYPE == "value":
            clip = functools.partial(torch.nn.utils.clip_grad_value_, clip_value=c.CLIP_VALUE)
        else:
            raise ValueError(
                f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be 'norm', 'total_norm' or 'value', got "
                f"{c.CLIP_TYPE!r}"
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
    return StepOptions(
        amp_dtype=amp_dtype,
        grad_scaler=scaler,
        clip_gradients=clip,
        accum_steps=accum,
        channels_last=bool(s.CHANNELS_LAST),
    )


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_module(cfg: CfgNode, module: nn.Module) -> nn.Module:
    """``torch.compile(module)`` with SOLVER.COMPILE's mode and backend, or ``module`` when off.

    Raises:
        ConfigError: SOLVER.COMPILE.MODE or BACKEND is not one torch knows.
    """
    c = cfg.SOLVER.COMPILE
    if not c.ENABLED:
        return module
    if c.MODE not in COMPILE_MODES:
        raise ConfigError(
            f"SOLVER.COMPILE.MODE must be one of {list(COMPILE_MODES)}, got {c.MODE!r}"
        )
    backends = torch._dynamo.list_backends(exclude_tags=())
    if c.BACKEND not in backends:
        raise ConfigError(f"SOLVER.COMPILE.BACKEND must be one of {backends}, got {c.BACKEND!r}")
    if c.BACKEND != "inductor" and c.MODE != "default":
        raise ConfigError(
            f"SOLVER.COMPILE.MODE {c.MODE!r} applies to the inductor backend only, got BACKEND "
            f"{c.BACKEND!r}"
        )
    logger.info("torch.compile of the training step: mode %s, backend %s", c.MODE, c.BACKEND)
    mode = c.MODE if c.BACKEND == "inductor" else None
    return cast(nn.Module, torch.compile(module, mode=mode, backend=c.BACKEND))


def build_model_for_eval(cfg: CfgNode) -> nn.Module:
    """The model of MODEL.WEIGHTS, with the classifier size taken from the checkpoint or the
    training set."""
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("--eval-only needs MODEL.WEIGHTS: the checkpoint to evaluate")
    checkpoint = load_checkpoint_file(cfg.MODEL.WEIGHTS)
    num_classes = checkpoint_num_classes(checkpoint) or cfg.MODEL.HEADS.NUM_CLASSES
    if not num_classes:
        num_classes = build_train_records(cfg)[1]
    model = build_model(with_num_classes(cfg, num_classes))
    load_model_weights(model, checkpoint, source=cfg.MODEL.WEIGHTS)
    log_model_summary(cfg, model)
    return model


def log_model_summary(cfg: CfgNode, model: nn.Module) -> None:
    """Log the parameters and the GFLOPs of one INPUT.SIZE_TEST image (training and eval-only)."""
    summary = describe_model(model, cfg.INPUT.SIZE_TEST, flip=cfg.TEST.FLIP.ENABLED)
    logger.info("Model summary: %s", summary)
