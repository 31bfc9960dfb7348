"""MGN (Wang et al., "Multiple Granularity Network", 2018), the network of the AdaSP paper, as in fastreid.

A shared ResNet trunk up to the first block of layer3; three branches, each with its own copy of the
rest of layer3 and of layer4: ``b1`` (global, layer4 with MODEL.BACKBONE.LAST_STRIDE) and one part
branch per entry of MODEL.MGN.PARTS (``b2``, ``b3``; layer4 with stride 1), whose feature map is
also cut into that many horizontal stripes. Every global map and every stripe has its own head
(MODEL.HEADS, 256-d embeddings with EMBEDDING_DIM 256): with PARTS [2, 3] the heads are
b1, b2, b3, b21, b22, b31, b32, b33.

Losses follow fastreid's convention: the losses named in MODEL.MGN.HEAD_LOSSES (cross-entropy by
default) are computed on each head's outputs and weighted by MODEL.MGN.HEAD_WEIGHTS (1/8 each by
default); every other loss (triplet, AdaSP, ...) is computed on the feature groups b1, b2, b3,
b2_parts (b21 and b22 features concatenated) and b3_parts, weighted by MODEL.MGN.GROUP_WEIGHTS
(1/5 each by default). Each value is logged as ``<log name>_<head or group>``. Losses with
per-dimension parameters (center, MPN-tuplet) are sized for one head's output (EMBEDDING_DIM), so
they belong in HEAD_LOSSES.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigBlock, Key
from reid.modeling.backbones import ResNet, build_backbone
from reid.modeling.heads import build_heads
from reid.modeling.losses import LOSS_REGISTRY, build_losses

from .base import MetaArchBase, backbone_channels
from .build import META_ARCH_REGISTRY

MGN_CONFIG = ConfigBlock(
    "MODEL.MGN",
    "MGN (the multiple granularity network).",
    {
        "PARTS": Key(
            [2, 3],
            (
                "Stripe count of each part branch (b2, b3, ...), after the global branch b1. "
                "[2, 3] = the MGN paper: heads b1, b2, b3, b21, b22, b31, b32, b33."
            ),
        ),
        "HEAD_LOSSES": Key(
            ["CrossEntropyLoss"],
            (
                "Registered losses computed on every head's outputs (they read logits / "
                "classifier weights); all other losses are computed on the feature groups b1,"
                " b2, b3, b2_parts, b3_parts."
            ),
        ),
        "HEAD_WEIGHTS": Key(
            [],
            (
                "Weight of each head, in the order b1, b2, b3, b21, b22, b31, b32, b33; [] = "
                "1/number of heads each (fastreid's 0.125), multiplied with the loss's SCALE."
            ),
        ),
        "GROUP_WEIGHTS": Key(
            [],
            (
                "Weight of each feature group, in the order b1, b2, b3, b2_parts, b3_parts; "
                "[] = 1/number of groups each (fastreid's 0.2), multiplied with the loss's "
                "SCALE."
            ),
        ),
    },
)


def _branch_weights(values: Sequence[float], count: int, key: str) -> list[float]:
    if len(values) == 0:
        return [1.0 / count] * count
    if len(values) != count:
        raise ValueError(
            f"{key} must list {count} weights (one per item) or be empty (1/{count} each), got {list(values)}"
        )
    return [float(v) for v in values]


def _concat_features(outputs: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The ``*features`` tensors of several heads concatenated along the feature dimension."""
    keys = [k for k in outputs[0] if k.endswith("features") and all(k in o for o in outputs)]
    return {k: torch.cat([o[k] for o in outputs], dim=1) for k in keys}


@META_ARCH_REGISTRY.register()
class MGN(MetaArchBase):
    """Training outputs: ``heads`` (head name -> that head's outputs dict), ``groups`` (feature group
    name -> a dict whose ``features`` / ``neck_features`` the metric losses read), ``features`` and
    ``neck_features`` (all heads' concatenated, in test order) and ``logits``, ``pred_logits``,
    ``cls_weight`` of the global head b1. Test feature: the heads' test features concatenated in
    fastreid's order b1, b2, b3, b21, b22, b31, b32, b33 (8 x 256 = 2048-d by default), not normalised.
    """

    config_block = MGN_CONFIG

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg)
        mgn = cfg.MODEL.MGN
        if cfg.MODEL.BACKBONE.WITH_NL:
            raise ValueError(
                "MGN does not support MODEL.BACKBONE.WITH_NL (fastreid's MGN configs set it False)"
            )
        parts = [int(p) for p in mgn.PARTS]
        if not parts or min(parts) < 2:
            raise ValueError(
                f"MODEL.MGN.PARTS must list the stripe count (>= 2) of each part branch, got {list(mgn.PARTS)}"
            )
        for name in mgn.HEAD_LOSSES:
            LOSS_REGISTRY.get(name)
        resnet = build_backbone(cfg)
        if not isinstance(resnet, ResNet):
            raise TypeError(
                f"MGN needs a ResNet backbone (build_resnet_backbone), got {type(resnet).__name__}"
            )
        channels = backbone_channels(cfg, resnet)

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
        part_conv5[0].set_stride(1)
        self.b1 = nn.Sequential(res_conv4, resnet.layer4)
        self.part_heads: dict[str, list[str]] = {}
        for index, count in enumerate(parts, start=2):
            branch = f"b{index}"
            self.add_module(
                branch, nn.Sequential(copy.deepcopy(res_conv4), copy.deepcopy(part_conv5))
            )
            self.part_heads[branch] = [f"{branch}{j}" for j in range(1, count + 1)]
        self.branch_names = ["b1"] + list(self.part_heads)
        self.head_names = self.branch_names + [
            n for names in self.part_heads.values() for n in names
        ]
        self.group_names = self.branch_names + [f"{b}_parts" for b in self.part_heads]
        self.heads = nn.ModuleDict({name: build_heads(cfg, channels) for name in self.head_names})
        self.loss_set = build_losses(cfg, feat_dim=self.heads["b1"].out_dim)

        self.head_losses = set(mgn.HEAD_LOSSES)
        self.head_weights = _branch_weights(
            mgn.HEAD_WEIGHTS, len(self.head_names), "MODEL.MGN.HEAD_WEIGHTS"
        )
        self.group_weights = _branch_weights(
            mgn.GROUP_WEIGHTS, len(self.group_names), "MODEL.MGN.GROUP_WEIGHTS"
        )

    def _feature_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.backbone(images)
        maps = {name: getattr(self, name)(shared) for name in self.branch_names}
        for branch, names in self.part_heads.items():
            fmap = maps[branch]
            if fmap.shape[2] < len(names):
                raise ValueError(
                    f"MGN branch {branch} cuts its feature map of height {fmap.shape[2]} into {len(names)} stripes: "
                    f"the input images (height {images.shape[2]}) are too small"
                )
            # Balanced stripes (fastreid's torch.chunk gives the same ones when the height divides, e.g. 384x128).
            maps.update(zip(names, torch.tensor_split(fmap, len(names), dim=2)))
        return maps

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor | dict[str, Any]:
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
        outputs.update({k: heads["b1"][k] for k in ("logits", "pred_logits", "cls_weight")})
        outputs["heads"] = heads
        outputs["groups"] = groups
        return outputs

    def losses(
        self,
        outputs: Mapping[str, Any],
        targets: torch.Tensor,
        weights: Mapping[str, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-head losses over ``outputs['heads']``, the others over ``outputs['groups']``, fastreid-weighted.

        ``weights`` (registered loss name -> weight) replaces the losses' SCALEs, as for LossSet.
        """
        targets = targets.to(self.device)
        active = dict(self.loss_set.weights if weights is None else weights)
        per_head = {n: w for n, w in active.items() if n in self.head_losses}
        per_group = {n: w for n, w in active.items() if n not in self.head_losses}
        values: dict[str, torch.Tensor] = {}
        plan = (
            ("head", self.head_names, self.head_weights, outputs["heads"], per_head),
            ("feature group", self.group_names, self.group_weights, outputs["groups"], per_group),
        )
        for kind, names, branch_weights, source, loss_weights in plan:
            if not loss_weights:
                continue
            for name, branch_weight in zip(names, branch_weights):
                scaled = {loss: w * branch_weight for loss, w in loss_weights.items()}
                try:
                    result = self.loss_set(source[name], targets, scaled)
                except KeyError as e:
                    raise KeyError(
                        f"MGN {kind} '{name}' lacks an output a loss needs ({e}); losses that read logits or "
                        f"classifier weights belong in MODEL.MGN.HEAD_LOSSES (now {sorted(self.head_losses)})"
                    ) from e
                values.update({f"{log_name}_{name}": v for log_name, v in result.items()})
        return values
