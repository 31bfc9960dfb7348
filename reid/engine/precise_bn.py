"""Precise BatchNorm (fastreid's TEST.PRECISE_BN): true averages of the BN statistics.

During training a BatchNorm layer's running mean and variance are exponential averages over
batches seen by changing weights. Before an evaluation, :class:`PreciseBN` recomputes them with
the weights fixed: the mean over NUM_ITER batches of TEST.PRECISE_BN.DATASET's training set
(training transforms and sampler, as fastreid's ``build_train_loader``) of each batch's mean and
unbiased variance of the layer's input, the layers that are being trained normalising with batch
statistics and every other module in eval mode. Layers kept in eval mode (frozen by the training
plan) keep their statistics, as in fastreid (only BN layers in training mode are updated).

fastreid 1.4.0 runs it once, after the last epoch, before the final evaluation; here it runs
before every evaluation of the trainer (TEST.EVAL_PERIOD and the last epoch), so intermediate
results are measured the way the final one is.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, ConfigError, Key, declare
from reid.data.loader import TrainLoader
from reid.structures import EpochSampler
from reid.utils import comm

from .train_loop import HookBase

logger = logging.getLogger(__name__)

PRECISE_BN_CONFIG = declare(
    ConfigBlock(
        "TEST.PRECISE_BN",
        "Precise BatchNorm statistics before evaluations (fastreid's TEST.PRECISE_BN).",
        {
            "ENABLED": Key(
                False,
                "Before every evaluation of the trainer, set the running mean and variance of "
                "each BatchNorm layer being trained to their average over NUM_ITER batches of "
                "DATASET's training set (the rest of the model in eval mode).",
            ),
            "DATASET": Key(
                "Market1501",
                "The registered dataset whose training images (training transforms and "
                "sampler) give the batches.",
            ),
            "NUM_ITER": Key(300, "Batches averaged (>= 1)."),
        },
    )
)


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """(name, module) of every BatchNorm layer of ``model`` that keeps running statistics."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats
    ]


def _counter(layer: _BatchNorm) -> torch.Tensor:
    """The layer's ``num_batches_tracked`` (there with running statistics)."""
    assert layer.num_batches_tracked is not None
    return layer.num_batches_tracked


class _Moments:
    """Running sums of a layer's per-batch input mean and unbiased variance."""

    def __init__(self, layer: _BatchNorm) -> None:
        assert layer.running_mean is not None
        self.calls = 0
        self.mean = torch.zeros_like(layer.running_mean, dtype=torch.float64)
        self.var = torch.zeros_like(layer.running_mean, dtype=torch.float64)

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0].detach().to(torch.float64)
        dims = [0, *range(2, x.dim())]
        self.mean += x.mean(dims)
        self.var += x.var(dims, correction=1)
        self.calls += 1


@torch.no_grad()
def update_bn_stats(
    model: nn.Module,
    batches: Iterable[Any],
    num_iter: int,
    layers: Sequence[_BatchNorm] | None = None,
) -> int:
    """Set the running statistics of ``layers`` to their average over ``num_iter`` batches.

    Every module of ``model`` runs in eval mode but ``layers``, which normalise with the batch's
    statistics; a layer's running mean (variance) becomes the mean over its calls of its input's
    per-channel mean (unbiased variance), averaged over the processes when several run. Layers
    that never ran keep their statistics; modes, momenta and ``num_batches_tracked`` are restored.

    Args:
        model: Called as ``model(batch)``.
        batches: At least ``num_iter`` batches.
        num_iter: Batches to average over.
        layers: BatchNorm layers of ``model`` to update (default: those in training mode).

    Returns:
        The number of layers whose statistics were replaced.

    Raises:
        ValueError: ``batches`` ran out before ``num_iter`` batches.
    """
    if layers is None:
        layers = [m for _, m in batchnorm_layers(model) if m.training]
    modes = [(m, m.training) for m in model.modules()]
    saved = [(m, m.momentum, _counter(m).clone()) for m in layers]
    moments = {m: _Moments(m) for m in layers}
    handles = [m.register_forward_pre_hook(moments[m]) for m in layers]
    try:
        model.eval()
        for m in layers:
            m.train()
            m.momentum = 0.0  # the running statistics stay put while the moments are summed
        done = 0
        for batch in itertools.islice(batches, num_iter):
            model(batch)
            done += 1
        if done < num_iter:
            raise ValueError(f"precise BN needs {num_iter} batches but the data gave only {done}")
        updated = 0
        for m, moment in moments.items():
            totals = torch.cat(
                [
                    moment.mean,
                    moment.var,
                    torch.tensor([moment.calls], dtype=torch.float64, device=moment.mean.device),
                ]
            )
            if comm.get_world_size() > 1:
                torch.distributed.all_reduce(totals)
            calls = float(totals[-1])
            if calls == 0:
                continue
            c = len(moment.mean)
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(totals[:c] / calls)
            m.running_var.copy_(totals[c : 2 * c] / calls)
            updated += 1
        return updated
    finally:
        for handle in handles:
            handle.remove()
        for m, momentum, tracked in saved:
            m.momentum = momentum
            _counter(m).copy_(tracked)
        for module, training in modes:
            module.training = training


def endless(loader: DataLoader | TrainLoader) -> Iterator[Any]:
    """The loader's batches epoch after epoch (its sampler's ``set_epoch`` called each time)."""
    if len(loader) == 0:
        raise ValueError("precise BN: the data loader gives no batch per epoch")
    for epoch in itertools.count():
        if isinstance(loader.sampler, EpochSampler):
            loader.sampler.set_epoch(epoch)
        yield from loader


class PreciseBN(HookBase):
    """Recomputes BatchNorm statistics before each evaluation (see the module docstring).

    Runs in ``after_epoch`` on the epochs the trainer evaluates (every ``period`` epochs and after
    the last one); register it before the evaluation hook. The batches continue from one call to
    the next, as in fastreid.

    Args:
        model: The model whose statistics are recomputed (the one that is evaluated).
        data_loader: Batches for ``model``; iterated epoch after epoch.
        num_iter: Batches averaged per update.
        period: The evaluation period in epochs (0: only after the last epoch).
        reference: The module whose BatchNorm layers' train / eval modes choose the layers to
            update, matched by name (the trained model when ``model`` is its moving average);
            default ``model``.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: DataLoader | TrainLoader,
        num_iter: int,
        period: int,
        reference: nn.Module | None = None,
    ) -> None:
        if num_iter < 1:
            raise ValueError(f"PreciseBN: num_iter must be >= 1, got {num_iter}")
        if not batchnorm_layers(model):
            raise ValueError("PreciseBN: the model has no BatchNorm layer with running statistics")
        self.model = model
        self.reference = reference if reference is not None else model
        self.data_loader = data_loader
        self.num_iter = num_iter
        self.period = period
        self._batches: Iterator[Any] | None = None

    def layers(self) -> list[_BatchNorm]:
        """The layers to update: those whose counterpart in ``reference`` is in training mode."""
        modes: Mapping[str, bool] = {name: m.training for name, m in self.reference.named_modules()}
        return [m for name, m in batchnorm_layers(self.model) if modes.get(name, m.training)]

    def update(self) -> None:
        """Recompute the statistics now."""
        if self._batches is None:
            self._batches = endless(self.data_loader)
        layers = self.layers()
        updated = update_bn_stats(self.model, self._batches, self.num_iter, layers)
        logger.info(
            "Precise BN: statistics of %d of %d BatchNorm layers recomputed over %d batches",
            updated,
            len(batchnorm_layers(self.model)),
            self.num_iter,
        )

    def after_epoch(self) -> None:
        done = self.trainer.epoch + 1
        if done == self.trainer.max_epoch or (self.period > 0 and done % self.period == 0):
            self.update()


def precise_bn_config(cfg: CfgNode) -> CfgNode:
    """The training config of the precise-BN batches: DATASETS.NAMES = [TEST.PRECISE_BN.DATASET],
    loading in the main process (DATALOADER.NUM_WORKERS 0, as fastreid) with the per-image
    transforms (the batched backend's image cache belongs to the training set).

    Raises:
        ConfigError: TEST.PRECISE_BN.NUM_ITER is below 1 or DATASET is empty.
    """
    c = PRECISE_BN_CONFIG.read(cfg)
    if c.NUM_ITER < 1:
        raise ConfigError(f"TEST.PRECISE_BN.NUM_ITER must be >= 1, got {c.NUM_ITER}")
    if not c.DATASET:
        raise ConfigError("TEST.PRECISE_BN.DATASET is empty: name a registered training dataset")
    out = cfg.clone()
    out.defrost()
    out.DATASETS.NAMES = [c.DATASET]
    out.DATALOADER.NUM_WORKERS = 0
    out.DATALOADER.PREFETCH_THREAD = "auto"
    out.INPUT.BACKEND = "per_image"
    out.freeze()
    return out
