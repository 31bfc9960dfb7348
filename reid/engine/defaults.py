"""The default trainer and the setup shared by the command-line tools."""
from __future__ import annotations

import argparse
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config import load_config
from reid.data.build import build_reid_test_loader, build_reid_train_loader
from reid.data.datasets import build_train_records
from reid.evaluation.evaluator import ReidEvaluator, format_results_table, inference_on_dataset
from reid.modeling import build_model
from reid.solver import build_lr_scheduler, build_optimizer, describe_schedule
from reid.utils import comm
from reid.utils.checkpoint import Checkpointer, load_checkpoint_file, load_model_state
from reid.utils.env import collect_env_info, draw_seed, seed_all_rng
from reid.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardWriter
from reid.utils.file_io import atomic_write_json, atomic_write_text
from reid.utils.logger import setup_logger

from . import hooks
from .train_loop import HookBase, SimpleTrainer

logger = logging.getLogger("reid")


def default_argument_parser(description: str = "reid training and evaluation") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the YAML config")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUTPUT_DIR")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (GPUs; CPU processes with gloo)")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine (0 .. num-machines - 1)")
    parser.add_argument(
        "--dist-url", default="tcp://127.0.0.1:29500", help="init URL of the process group (multi-machine: the first machine's address)"
    )
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    return parser


def _agreed_seed(seed: int) -> int:
    """SEED < 0 draws a seed; all processes use rank 0's so samplers stay in step."""
    if seed >= 0:
        return seed
    seeds = [draw_seed()]
    if comm.get_world_size() > 1:
        torch.distributed.broadcast_object_list(seeds, src=0)
    return seeds[0]


def default_setup(cfg: CfgNode, args: Optional[argparse.Namespace] = None) -> CfgNode:
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
    return default_setup(load_config(args.config_file or None, args.opts or []), args)


def _with_num_classes(cfg: CfgNode, num_classes: int) -> CfgNode:
    configured = cfg.MODEL.HEADS.NUM_CLASSES
    if configured and configured != num_classes:
        logger.warning(
            "MODEL.HEADS.NUM_CLASSES is %d but the training set has %d identities: using %d", configured, num_classes, num_classes
        )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.freeze()
    return cfg


class DefaultTrainer(SimpleTrainer):
    """Builds everything from the config: data, model, optimizer, schedule, checkpointer and hooks."""

    def __init__(self, cfg: CfgNode) -> None:
        data_loader, num_classes = build_reid_train_loader(cfg)
        cfg = _with_num_classes(cfg, num_classes)
        model = build_model(cfg)
        logger.info("Model:\n%s", model)
        optimizer = build_optimizer(cfg, model)
        model = self.wrap_distributed(model)
        super().__init__(model, data_loader, optimizer, seed=cfg.SEED)
        self.cfg = cfg
        self.iters_per_epoch = len(data_loader)
        if self.iters_per_epoch == 0:
            raise ValueError(
                f"the training set gives no full batch of SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} images per epoch"
            )
        self.scheduler = build_lr_scheduler(cfg, optimizer, self.iters_per_epoch)
        logger.info("LR schedule:\n%s", describe_schedule(cfg, self.iters_per_epoch))
        self.checkpointer = Checkpointer(
            model,
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            meta={"num_classes": num_classes},
            optimizer=optimizer,
            scheduler=self.scheduler,
        )
        self.start_epoch = 0
        self.register_hooks(self.build_hooks())

    @staticmethod
    def wrap_distributed(model: nn.Module) -> nn.Module:
        if comm.get_world_size() == 1:
            return model
        device = next(model.parameters()).device
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
            find_unused_parameters=True,
        )

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from OUTPUT_DIR's last checkpoint (with ``resume``), else load MODEL.WEIGHTS if set."""
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if "epoch" in extra:
            self.start_epoch = int(extra["epoch"]) + 1
            self.load_hooks_state_dict(extra.get("hooks", {}))
            self.last_checkpoint = self.checkpointer.get_checkpoint_file()

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.cfg.SOLVER.MAX_EPOCH, self.iters_per_epoch)

    def build_writers(self) -> List[EventWriter]:
        return [
            CommonMetricPrinter(self.max_iter, self.iters_per_epoch),
            JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")),
            TensorboardWriter(os.path.join(self.cfg.OUTPUT_DIR, "tensorboard")),
        ]

    def build_hooks(self) -> List[Optional[HookBase]]:
        cfg = self.cfg
        main = comm.is_main_process()

        def evaluate() -> Dict[str, Dict[str, float]]:
            return self.test(cfg, self.model, epoch=self.epoch)

        return [
            hooks.LRScheduler(self.optimizer, self.scheduler),
            hooks.EvalHook(cfg.TEST.EVAL_PERIOD, evaluate, self.checkpointer),
            hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD),
            hooks.PeriodicWriter(self.build_writers(), period=cfg.LOG_PERIOD) if main else None,
            hooks.ProgressBar() if main else None,
        ]

    @classmethod
    def test(cls, cfg: CfgNode, model: nn.Module, epoch: Optional[int] = None) -> Dict[str, Dict[str, float]]:
        """Evaluate on every DATASETS.TESTS set; prints a table and writes OUTPUT_DIR/results.json."""
        results: Dict[str, Dict[str, float]] = OrderedDict()
        for name in cfg.DATASETS.TESTS:
            loader, num_query = build_reid_test_loader(cfg, name)
            evaluator = ReidEvaluator(cfg, num_query, output_dir=cfg.OUTPUT_DIR)
            results[name] = inference_on_dataset(model, loader, evaluator, flip=cfg.TEST.FLIP.ENABLED)
        if comm.is_main_process():
            logger.info("Evaluation results%s:\n%s", "" if epoch is None else f" after epoch {epoch + 1}", format_results_table(results))
            atomic_write_json(
                os.path.join(cfg.OUTPUT_DIR, "results.json"),
                {"epoch": None if epoch is None else epoch + 1, "results": results},
            )
        return results


def build_model_for_eval(cfg: CfgNode) -> nn.Module:
    """The model of MODEL.WEIGHTS, with the classifier size taken from the checkpoint or the training set."""
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("--eval-only needs MODEL.WEIGHTS: the checkpoint to evaluate")
    checkpoint = load_checkpoint_file(cfg.MODEL.WEIGHTS)
    num_classes = int(checkpoint.get("num_classes", 0)) or cfg.MODEL.HEADS.NUM_CLASSES
    if not num_classes:
        num_classes = build_train_records(cfg)[1]
    model = build_model(_with_num_classes(cfg, num_classes))
    load_model_state(model, checkpoint["model"], source=cfg.MODEL.WEIGHTS)
    return model
