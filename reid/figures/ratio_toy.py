"""The ratio-loss paper's toy run (Yang et al. 2020, Section 3.4 and Figure 2).

An 8-layer CNN with 2-D features is trained on MNIST (the first ``per_class`` training images of
each digit, 2,000 in the paper) with three losses: (a) the original softmax (a linear classifier
with bias), (b) the normalised softmax (NSL: ``s cos`` of the feature and the class weight) and
(c) NSL plus lambda times the circle-based ratio loss. Figure 2 plots, per variant, the learned
2-D training features (top row) and the same features L2-normalised, on the unit circle (bottom
row). The paper's network follows its reference [30], which is not available: the CNN here is the
LeNet++ of the center-loss paper (Wen et al. 2016), the usual 2-D feature network, with 6
convolutions (5x5, 32-32-64-64-128-128 channels, PReLU, max-pooling after each pair), the 2-D
feature layer and the classifier: 8 layers with weights; a batch norm after each convolution
keeps SGD stable for all three losses.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.data.mnist import Mnist, per_class_subset
from reid.modeling.losses import cross_entropy_loss, normalized_softmax_logits, ratio_loss
from reid.utils.file_io import atomic_write_json

__all__ = [
    "VARIANTS",
    "LeNetPlusPlus",
    "ToyHead",
    "ToySettings",
    "ToyVariant",
    "plot_figure2",
    "run_ratio_toy",
    "train_variant",
    "variant_loss",
]

logger = logging.getLogger(__name__)

# The three panels' variants, in the paper's order, with their captions.
VARIANTS: dict[str, str] = {
    "softmax": "(a) Original softmax",
    "nsl": "(b) Normalized softmax",
    "nsl_ratio": "(c) Normalized softmax with ratio loss",
}
NUM_CLASSES = 10
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass(frozen=True)
class ToySettings:
    """What the toy run does.

    Args:
        per_class: Training images per digit (the paper: 2,000).
        epochs: Passes over those images.
        batch_size: Images per step.
        lr: SGD learning rate (momentum 0.9), divided by 10 after half and three quarters of the
            epochs.
        weight_decay: SGD weight decay.
        nsl_scale: ``s`` of the normalised softmax (the paper's re-id value, 14).
        ratio_weight: lambda of the ratio loss (the paper: 1).
        ratio_eps: eps of the ratio loss (the paper: 0.5).
        seed: Seeds the initialisation and the batch order (the same for every variant).
        device: Where to train.
    """

    per_class: int = 2000
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    weight_decay: float = 5e-4
    nsl_scale: float = 14.0
    ratio_weight: float = 1.0
    ratio_eps: float = 0.5
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("per_class", "epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "nsl_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.ratio_weight < 0 or self.ratio_eps < 0 or self.weight_decay < 0:
            raise ValueError("ratio_weight, ratio_eps and weight_decay must be >= 0")


class LeNetPlusPlus(nn.Module):
    """28 x 28 grey images -> 2-D features: 3 x (two 5x5 convolutions, each with batch norm and
    PReLU, then 2x2 max-pool), then a linear layer to ``feat_dim``; weights initialised for PReLU
    (He et al. 2015).

    >>> LeNetPlusPlus()(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 2])
    """

    def __init__(self, feat_dim: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for width in (32, 64, 128):
            for _ in range(2):
                layers += [
                    nn.Conv2d(channels, width, 5, padding=2, bias=False),
                    nn.BatchNorm2d(width),
                    nn.PReLU(width),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.feature = nn.Linear(128 * 3 * 3, feat_dim)
        # He et al.'s initialisation for PReLU networks. Without it (torch's default) the 2-D
        # feature starts at std ~0.01 and softmax does not start learning; without the batch norms
        # SGD at 0.01 diverges (softmax) or blows the feature norm up (NSL).
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, a=0.25)
        nn.init.zeros_(self.feature.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature(self.body(images).flatten(1))


class ToyHead(nn.Module):
    """The classifier of a variant: linear with bias (softmax) or cosine (NSL, ``s cos``)."""

    def __init__(self, variant: str, feat_dim: int, nsl_scale: float) -> None:
        super().__init__()
        self.variant = variant
        self.nsl_scale = nsl_scale
        self.weight = nn.Parameter(torch.empty(NUM_CLASSES, feat_dim))
        if variant == "softmax":
            nn.init.xavier_uniform_(self.weight)
        else:  # only the direction matters
            nn.init.normal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(NUM_CLASSES)) if variant == "softmax" else None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            return F.linear(features, self.weight, self.bias)
        return normalized_softmax_logits(features, self.weight, self.nsl_scale)


@dataclass
class ToyVariant:
    """One trained variant: the 2-D training features with their labels, and the accuracies."""

    name: str
    features: np.ndarray
    labels: np.ndarray
    train_accuracy: float
    test_accuracy: float
    seconds: float
    losses: list[float] = field(default_factory=list)


def _tensor_images(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0).unsqueeze(1)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


def variant_loss(
    variant: str,
    head: ToyHead,
    features: torch.Tensor,
    logits: torch.Tensor,
    y: torch.Tensor,
    settings: ToySettings,
) -> torch.Tensor:
    """A variant's training loss: CE of ``logits`` (the head's, linear or ``s cos``), plus for
    ``nsl_ratio`` lambda times the ratio loss of the features and the head's class weights."""
    loss = cross_entropy_loss(logits, y)
    if variant == "nsl_ratio":
        loss = loss + settings.ratio_weight * ratio_loss(
            features, y, head.weight, eps=settings.ratio_eps
        )
    return loss


@torch.no_grad()
def _predict(
    model: nn.Module, head: ToyHead, images: torch.Tensor, batch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, predicted classes) of ``images``, in eval mode."""
    model.eval()
    feats, preds = [], []
    for start in range(0, images.shape[0], batch):
        f = model(images[start : start + batch].to(device))
        feats.append(f.cpu())
        preds.append(head(f).argmax(1).cpu())
    model.train()
    if not feats:
        return torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)
    return torch.cat(feats), torch.cat(preds)


def train_variant(
    variant: str,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    settings: ToySettings,
) -> ToyVariant:
    """Train the CNN with one variant's loss and return its 2-D training features.

    Args:
        variant: A key of :data:`VARIANTS`.
        train_images: N x 28 x 28 uint8.
        train_labels: N digits.
        test_images: M x 28 x 28 uint8 (the accuracy is measured there).
        test_labels: M digits.
        settings: The run's settings.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; one of {list(VARIANTS)}")
    device = torch.device(settings.device)
    torch.manual_seed(settings.seed)
    model, head = LeNetPlusPlus().to(device), ToyHead(variant, 2, settings.nsl_scale).to(device)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(
        params, lr=settings.lr, momentum=0.9, weight_decay=settings.weight_decay
    )
    milestones = sorted({max(1, settings.epochs // 2), max(1, (3 * settings.epochs) // 4)})
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    x, y = _tensor_images(train_images), torch.from_numpy(train_labels).long()
    order_rng = torch.Generator().manual_seed(settings.seed)
    start, losses = time.perf_counter(), []
    for epoch in range(settings.epochs):
        order = torch.randperm(x.shape[0], generator=order_rng)
        total, steps = 0.0, 0
        for first in range(0, x.shape[0], settings.batch_size):
            idx = order[first : first + settings.batch_size]
            images, targets = x[idx].to(device), y[idx].to(device)
            features = model(images)
            loss = variant_loss(variant, head, features, head(features), targets, settings)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        scheduler.step()
        losses.append(total / steps)
        logger.info("%s: epoch %d/%d, loss %.4f", variant, epoch + 1, settings.epochs, losses[-1])
    features, train_pred = _predict(model, head, x, 512, device)
    _, test_pred = _predict(model, head, _tensor_images(test_images), 512, device)
    test_y = torch.from_numpy(test_labels).long()
    return ToyVariant(
        name=variant,
        features=features.numpy(),
        labels=train_labels.copy(),
        train_accuracy=float((train_pred == y).float().mean()) * 100,
        test_accuracy=float((test_pred == test_y).float().mean()) * 100
        if len(test_y)
        else math.nan,
        seconds=time.perf_counter() - start,
        losses=losses,
    )


def plot_figure2(variants: Mapping[str, ToyVariant], path: str) -> Any:
    """Figure 2 as one image: per variant (columns) the 2-D training features (top) and the same
    features L2-normalised (bottom), coloured by digit.

    Args:
        variants: Variant name -> its trained result, in column order.
        path: The image file to write (its extension picks the format, e.g. ``.png``).

    Returns:
        The matplotlib figure (closed after saving; its axes stay readable).

    Raises:
        ImportError: matplotlib is not installed (``pip install -e ".[figures]"``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            'the toy run plots with matplotlib: pip install -e ".[figures]" (or matplotlib)'
        ) from e
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(2, len(variants), figsize=(4.2 * len(variants), 8.4), squeeze=False)
    for col, (name, result) in enumerate(variants.items()):
        norms = np.linalg.norm(result.features, axis=1, keepdims=True)
        rows = (result.features, result.features / np.maximum(norms, 1e-12))
        for row, points in enumerate(rows):
            ax = axes[row][col]
            for digit in range(NUM_CLASSES):
                member = result.labels == digit
                ax.scatter(
                    points[member, 0],
                    points[member, 1],
                    s=2,
                    color=colours(digit),
                    label=str(digit),
                    rasterized=True,
                )
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xlabel("feature 1")
            ax.set_ylabel("feature 2")
            which = "original features" if row == 0 else "normalized features"
            ax.set_title(f"{VARIANTS.get(name, name)}\n{which}", fontsize=10)
        axes[1][col].set_xlabel(f"feature 1 (test accuracy {result.test_accuracy:.2f} %)")
    axes[0][0].legend(markerscale=4, fontsize=7, loc="best", title="digit")
    fig.suptitle("MNIST, 2-D features: softmax, normalized softmax, + ratio loss (Figure 2)")
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def run_ratio_toy(
    mnist: Mnist, output: str, settings: ToySettings, variants: tuple[str, ...] = tuple(VARIANTS)
) -> dict[str, ToyVariant]:
    """Train every variant on the same MNIST subset, write Figure 2 to ``output`` and a summary
    (settings, accuracies, losses per epoch) beside it as ``<output stem>.json``.

    Args:
        mnist: The data (:func:`reid.data.mnist.load_mnist`).
        output: The image file.
        settings: The run's settings.
        variants: Which variants (columns), in order.

    Returns:
        Variant name -> its result.
    """
    subset = per_class_subset(mnist.train_labels, settings.per_class, range(NUM_CLASSES))
    images, labels = mnist.train_images[subset], mnist.train_labels[subset]
    logger.info(
        "MNIST from %s: %d training images (%d per digit), %d test images",
        mnist.folder,
        len(subset),
        settings.per_class,
        len(mnist.test_labels),
    )
    results = {}
    for name in variants:
        results[name] = train_variant(
            name, images, labels, mnist.test_images, mnist.test_labels, settings
        )
        logger.info(
            "%s: train accuracy %.2f %%, test accuracy %.2f %% (%.0f s)",
            name,
            results[name].train_accuracy,
            results[name].test_accuracy,
            results[name].seconds,
        )
    plot_figure2(results, output)
    summary = {
        "settings": asdict(settings),
        "mnist": mnist.folder,
        "image": os.path.abspath(output),
        "variants": {
            name: {
                "train_accuracy": r.train_accuracy,
                "test_accuracy": r.test_accuracy,
                "seconds": r.seconds,
                "loss_per_epoch": r.losses,
            }
            for name, r in results.items()
        },
    }
    atomic_write_json(os.path.splitext(output)[0] + ".json", summary)
    return results
