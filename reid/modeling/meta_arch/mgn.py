"""MGN (Wang et al., "Multiple Granularity Network", 2018), the AdaSP paper's network, as in
fastreid.

A shared ResNet trunk up to the first block of layer3; branches that each own a copy of the rest
of layer3 and of layer4: ``b1`` (global, layer4 with the backbone's last stride) and one part
branch per entry of ``parts`` (``b2``, ``b3``; layer4 with stride 1), whose feature map is also
cut into that many horizontal stripes. Every global map and every stripe has its own head
(MODEL.HEADS; 256-d embeddings with EMBEDDING_DIM 256): with parts [2, 3] the heads are
b1, b2, b3, b21, b22, b31, b32, b33.

Losses follow fastreid's convention: the losses named in ``head_losses`` (cross-entropy by
default) are computed on each head's outputs and weighted by ``head_weights`` (1/8 each by
default); every other loss (triplet, AdaSP, ...) is computed on the feature groups b1, b2, b3,
b2_parts (b21 and b22 features concatenated) and b3_parts, weighted by ``group_weights`` (1/5
each by default). Each value is logged as ``<log name>_<head or group>``. Losses with
per-dimension parameters (center, MPN-tuplet) are sized for one head's output, so they belong in
``head_losses``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable
from reid.modeling.backbones import ResNet, build_backbone
from reid.modeling.backbones.resnet import set_stage_stride
from reid.modeling.heads import build_heads
from reid.modeling.losses import LOSS_REGISTRY, LossSet, build_losses
from reid.structures import OutputKeys
from reid.utils.registry import RegistryKeyError

from .base import MetaArchBase
from .build import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, META_ARCH_REGISTRY

logger = logging.getLogger(__name__)

# Keys of MGN's training outputs besides OutputKeys: head name -> that head's outputs dict, and
# feature group name -> a dict whose features / neck_features the metric losses read.
HEADS_OUTPUT = "heads"
GROUPS_OUTPUT = "groups"

MGN_CONFIG = ConfigBlock(
    "MODEL.MGN",
    "MGN, the multiple granularity network: its branches and how its losses are weighted.",
    {
        "PARTS": Key(
            [2, 3],
            (
                "Stripe count (>= 2) of each part branch (b2, b3, ...), after the global branch "
                "b1. [2, 3] = the MGN paper: heads b1, b2, b3, b21, b22, b31, b32, b33."
            ),
        ),
        "STRIPES": Key(
            "chunk",
            (
                'How a part branch cuts its feature map of height H into n stripes: "chunk" = '
                "torch.chunk, ceil(H / n) rows each and the rest last (fastreid's MGN; on H = 16 "
                'with 3 stripes: 6, 6, 4 rows), "balanced" = torch.tensor_split, sizes differing '
                "by at most one row (6, 5, 5; reid's Base files). Both agree when n divides H "
                "(24 rows at 384x128)."
            ),
        ),
        "HEAD_LOSSES": Key(
            ["CrossEntropyLoss"],
            (
                "Registered losses computed on every head's outputs (those that read logits or "
                "classifier weights); the other losses of MODEL.LOSSES.NAME are computed on the "
                "feature groups b1, b2, b3, b2_parts, b3_parts."
            ),
        ),
        "HEAD_WEIGHTS": Key(
            [],
            (
                "Weight of each head, in the order b1, b2, b3, b21, b22, b31, b32, b33; [] = "
                "1 / the number of heads each (fastreid's 0.125); times the loss's SCALE."
            ),
        ),
        "GROUP_WEIGHTS": Key(
            [],
            (
                "Weight of each feature group, in the order b1, b2, b3, b2_parts, b3_parts; "
                "[] = 1 / the number of groups each (fastreid's 0.2); times the loss's SCALE."
            ),
        ),
    },
)


STRIPES = ("chunk", "balanced")


def _branch_weights(values: Sequence[float], names: Sequence[str], argument: str) -> list[float]:
    """One weight per name: ``values``, or 1 / len(names) each when ``values`` is empty."""
    count = len(names)
    if len(values) == 0:
        return [1.0 / count] * count
    if len(values) != count:
        raise InvalidArgument(
            argument,
            f"must list {count} weights (one per item of {list(names)}) or be empty "
            f"(1/{count} each), got {list(values)}",
        )
    return [float(v) for v in values]


def _concat_features(outputs: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The ``*features`` tensors of several heads concatenated along the feature dimension."""
    keys = [k for k in outputs[0] if k.endswith("features") and all(k in o for o in outputs)]
    return {k: torch.cat([o[k] for o in outputs], dim=1) for k in keys}


@META_ARCH_REGISTRY.register()
class MGN(MetaArchBase):
    """The multiple granularity network on a ResNet (see the module's doc).

    Training outputs: ``heads`` (head name -> that head's outputs dict), ``groups`` (feature group
    name -> a dict whose ``features`` / ``neck_features`` the metric losses read), ``features``
    and ``neck_features`` (all heads' concatenated, in test order) and ``logits`` and
    ``cls_weight`` of the global head b1. Test feature: the heads' test features concatenated in
    fastreid's order b1, b2, b3, b21, b22, b31, b32, b33 (8 x 256 = 2048-d by default), not
    normalised.

    Args:
        backbone: The ResNet whose stages the branches are made of (copied per branch); without
            non-local blocks.
        heads: One head per name of :meth:`head_names_for` ``(parts)``, each for the ResNet's
            ``out_channels``.
        loss_set: The losses.
        parts: The stripe count (>= 2) of each part branch.
        head_losses: Names of the losses of ``loss_set`` computed on every head's outputs; the
            other losses are computed on the feature groups. A registered loss that is not in
            the loss set is allowed (and not computed).
        head_weights: One weight per head, in :meth:`head_names_for` order; empty = 1/heads each.
        group_weights: One weight per feature group (b1, b2, ..., b2_parts, ...); empty =
            1/groups each.
        stripes: "chunk" (torch.chunk, fastreid's) or "balanced" (torch.tensor_split).
        pixel_mean: The per-channel mean (R, G, B) on the 0..255 scale.
        pixel_std: The per-channel standard deviation (R, G, B).
    """

    config_block = MGN_CONFIG

    @configurable
    def __init__(
        self,
        backbone: ResNet,
        heads: Mapping[str, nn.Module],
        loss_set: LossSet,
        *,
        parts: Sequence[int] = (2, 3),
        head_losses: Sequence[str] = ("CrossEntropyLoss",),
        head_weights: Sequence[float] = (),
        group_weights: Sequence[float] = (),
        stripes: str = "chunk",
        pixel_mean: Sequence[float] = IMAGENET_PIXEL_MEAN,
        pixel_std: Sequence[float] = IMAGENET_PIXEL_STD,
    ) -> None:
        super().__init__(pixel_mean, pixel_std)
        if stripes not in STRIPES:
            raise InvalidArgument("stripes", f"must be one of {list(STRIPES)}, got {stripes!r}")
        self.stripes = stripes
        self._check_arguments(backbone, heads, loss_set, parts, head_losses)
        self.part_heads = self._part_heads(parts)
        self.branch_names = ["b1"] + list(self.part_heads)
        self.head_names = self.head_names_for(parts)
        self.group_names = self.branch_names + [f"{b}_parts" for b in self.part_heads]
        self._build_branches(backbone)
        self.heads = nn.ModuleDict({name: heads[name] for name in self.head_names})
        self.loss_set = loss_set
        self.head_losses = set(head_losses)
        self.head_weights = _branch_weights(head_weights, self.head_names, "head_weights")
        self.group_weights = _branch_weights(group_weights, self.group_names, "group_weights")

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """MODEL.MGN's arguments, the ResNet of MODEL.BACKBONE, one MODEL.HEADS head per name and
        the loss set for one head's output dim, built in that order.

        Args:
            cfg: The whole config.
        """
        args = cls.pixel_arguments(cfg).update_from(MGN_CONFIG.arguments(cfg))
        backbone = build_backbone(cfg)
        channels = cast(int, backbone.out_channels)
        heads = {name: build_heads(cfg, channels) for name in cls.head_names_for(args["parts"])}
        loss_set = build_losses(cfg, feat_dim=cast(int, heads["b1"].out_dim))
        return args.set("backbone", backbone).set("heads", heads).set("loss_set", loss_set)

    @classmethod
    def head_names_for(cls, parts: Sequence[int]) -> list[str]:
        """The heads' names in test-feature order: the branches, then each branch's stripes.

        >>> MGN.head_names_for([2, 3])
        ['b1', 'b2', 'b3', 'b21', 'b22', 'b31', 'b32', 'b33']
        """
        part_heads = cls._part_heads(parts)
        return ["b1", *part_heads, *(name for names in part_heads.values() for name in names)]

    @staticmethod
    def _part_heads(parts: Sequence[int]) -> dict[str, list[str]]:
        """Part branch name -> the names of its stripes' heads."""
        return {
            f"b{index}": [f"b{index}{j}" for j in range(1, int(count) + 1)]
            for index, count in enumerate(parts, start=2)
        }

    @classmethod
    def _check_arguments(
        cls,
        backbone: nn.Module,
        heads: Mapping[str, nn.Module],
        loss_set: LossSet,
        parts: Sequence[int],
        head_losses: Sequence[str],
    ) -> None:
        if not isinstance(backbone, ResNet):
            raise TypeError(
                f"MGN needs a ResNet backbone (build_resnet_backbone), "
                f"got {type(backbone).__name__}"
            )
        if backbone.nl_after:
            raise InvalidArgument(
                "backbone",
                "has non-local blocks, which MGN does not support (MODEL.BACKBONE.WITH_NL; "
                "fastreid's MGN configs set it False)",
            )
        if not parts or min(int(p) for p in parts) < 2:
            raise InvalidArgument(
                "parts",
                f"must list the stripe count (>= 2) of each part branch, got {list(parts)}",
            )
        for name in head_losses:
            if name in loss_set.losses:
                continue
            try:
                LOSS_REGISTRY.get(name)  # registered but not in the loss set: not computed
            except RegistryKeyError as e:
                raise InvalidArgument(
                    "head_losses",
                    f"names '{name}', which is neither in the loss set "
                    f"({', '.join(loss_set.losses)}) nor registered: {e}",
                ) from None
        expected = cls.head_names_for(parts)
        if sorted(heads) != sorted(expected):
            raise InvalidArgument(
                "heads", f"must map each of {expected} to a head, got {list(heads)}"
            )

    def _build_branches(self, resnet: ResNet) -> None:
        """``backbone``: the trunk up to layer3's first block; ``b1``: the rest of layer3 and
        layer4; ``b2``, ...: copies of them, layer4 with stride 1."""
        self.backbone = nn.Sequential(
            resnet.conv1,
            resnet.bn1,
            resnet.relu,
            resnet.maxpool,
            resnet.layer1,
            resnet.layer2,
            resnet.layer3[0],
        )
        res_conv4 = nn.Sequential(*resnet.layer3[1:])
        part_conv5 = copy.deepcopy(resnet.layer4)
        set_stage_stride(part_conv5, 1)
        self.b1 = nn.Sequential(res_conv4, resnet.layer4)
        for branch in self.part_heads:
            self.add_module(
                branch, nn.Sequential(copy.deepcopy(res_conv4), copy.deepcopy(part_conv5))
            )

    def _feature_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.backbone(images)
        maps = {name: getattr(self, name)(shared) for name in self.branch_names}
        for branch, names in self.part_heads.items():
            fmap = maps[branch]
            parts = (
                torch.chunk(fmap, len(names), dim=2)
                if self.stripes == "chunk"
                else torch.tensor_split(fmap, len(names), dim=2)
            )
            if len(parts) < len(names) or min(p.shape[2] for p in parts) == 0:
                raise ValueError(
                    f"MGN branch {branch} cuts its feature map of height {fmap.shape[2]} into "
                    f"{len(names)} stripes ({self.stripes}), which leaves a stripe empty: the "
                    f"input images (height {images.shape[2]}) are too small"
                )
            maps.update(zip(names, parts))
        return maps

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor | dict[str, Any]:
        """The training outputs (see the class doc), or in eval mode the test feature.

        Args:
            batch: ``images`` (B x 3 x H x W in 0..255) and, in training, ``targets``.
        """
        maps = self._feature_maps(self.preprocess_image(batch))
        if not self.training:
            return torch.cat([self.heads[name](maps[name]) for name in self.head_names], dim=1)
        targets = self.batch_targets(batch)
        heads = {name: self.heads[name](maps[name], targets) for name in self.head_names}
        groups: dict[str, Mapping[str, torch.Tensor]] = {
            name: heads[name] for name in self.branch_names
        }
        for branch, names in self.part_heads.items():
            groups[f"{branch}_parts"] = _concat_features([heads[n] for n in names])
        outputs: dict[str, Any] = dict(_concat_features([heads[n] for n in self.head_names]))
        outputs.update({k: heads["b1"][k] for k in (OutputKeys.LOGITS, OutputKeys.CLS_WEIGHT)})
        outputs[HEADS_OUTPUT] = heads
        outputs[GROUPS_OUTPUT] = groups
        return outputs

    def losses(
        self,
        outputs: Mapping[str, Any],
        targets: torch.Tensor,
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-head losses over ``outputs["heads"]``, the others over ``outputs["groups"]``.

        Args:
            outputs: The training outputs.
            targets: The identity labels.
            weights: Registered loss name -> weight, replacing the configured ones (a stage).

        Returns:
            ``<log name>_<head or group>`` -> loss weight x branch weight x loss value.
        """
        targets = targets.to(self.device)
        active = dict(self.loss_set.weights if weights is None else weights)
        per_head = {n: w for n, w in active.items() if n in self.head_losses}
        per_group = {n: w for n, w in active.items() if n not in self.head_losses}
        values: dict[str, torch.Tensor] = {}
        plan = (
            ("head", self.head_names, self.head_weights, outputs[HEADS_OUTPUT], per_head),
            (
                "feature group",
                self.group_names,
                self.group_weights,
                outputs[GROUPS_OUTPUT],
                per_group,
            ),
        )
        for kind, names, branch_weights, source, loss_weights in plan:
            if not loss_weights:
                continue
            for name, branch_weight in zip(names, branch_weights):
                scaled = {loss: w * branch_weight for loss, w in loss_weights.items()}
                try:
                    result = self.loss_set(source[name], targets, scaled)
                except KeyError as e:
                    missing = e.args[0] if e.args else e
                    raise KeyError(
                        f"MGN {kind} '{name}' lacks an output a loss needs ({missing}); losses "
                        f"that read logits or classifier weights belong in MODEL.MGN.HEAD_LOSSES "
                        f"(now {sorted(self.head_losses)})"
                    ) from e
                values.update({f"{log_name}_{name}": v for log_name, v in result.items()})
        return values
