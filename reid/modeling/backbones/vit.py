"""Vision Transformer (Dosovitskiy et al., 2021) for ReID, fastreid's ``build_vit_backbone``.

As in fastreid (after TransReID): overlapping patches (a conv of kernel 16 and stride
MODEL.BACKBONE.STRIDE_SIZE), a class token and a learned position embedding for the grid of
INPUT.SIZE_TRAIN, pre-norm transformer blocks (timm's ``Block``), a final LayerNorm; the output is
the class token as an N x 768 x 1 x 1 map (the head's POOL_LAYER is "Identity"). DEPTH "base"
(12 blocks, 12 heads, MLP ratio 4, qkv bias) or "small" (8 blocks, 8 heads, MLP ratio 3, no qkv
bias, attention scale 768^-0.5: the first timm ViT-S). Module names are timm's and fastreid's, so
fastreid's checkpoints and the published ImageNet weights (``jx_vit_base_p16_224-80ecf9dd.pth``,
``vit_small_p16_224-15ec54c9.pth``; their 14 x 14 position embedding resized to this grid) load by
name. Images must have the INPUT.SIZE_TRAIN size, at test time too (the position embedding is
fixed), as in fastreid.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence
from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from timm.layers import Attention, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import (
    ConfigArgs,
    ConfigBlock,
    ConfigError,
    InvalidArgument,
    Key,
    configurable,
)

from .build import BACKBONE_CONFIG, BACKBONE_REGISTRY
from .pretrained import find_cached_or_download, load_pretrained, read_state_dict

logger = logging.getLogger(__name__)

SIE_COE_DEFAULT = 3.0

VIT_CONFIG = ConfigBlock(
    "MODEL.BACKBONE",
    "Vision Transformer (build_vit_backbone; DEPTH 'small' or 'base'): fastreid's keys.",
    {
        "STRIDE_SIZE": Key(
            [16, 16],
            "Stride (height, width) of the 16x16 patch embedding; below 16 the patches overlap "
            "(TransReID uses 12).",
        ),
        "DROP_PATH_RATIO": Key(
            0.1,
            "Stochastic depth: the drop-path rate rises linearly from 0 to this at the last block.",
        ),
        "DROP_RATIO": Key(
            0.0, "Dropout after the position embedding, the attention's projection and the MLP."
        ),
        "ATT_DROP_RATE": Key(0.0, "Dropout on the attention weights."),
        "SIE_COE": Key(
            SIE_COE_DEFAULT,
            "Weight of TransReID's side information (camera) embedding. fastreid reads it but its "
            "build_vit_backbone builds no camera embedding, so it has no effect there; it is not "
            "implemented here, and a value other than 3.0 is an error.",
        ),
    },
)

_RELEASES = "https://github.com/rwightman/pytorch-image-models/releases/download/"

_SMALL = _RELEASES + "v0.1-weights/vit_small_p16_224-15ec54c9.pth"
_BASE = _RELEASES + "v0.1-vitjx/jx_vit_base_p16_224-80ecf9dd.pth"
# DEPTH -> (blocks, heads, MLP ratio, qkv bias, attention scale 768^-0.5, published weights)
VIT_SPECS: dict[str, tuple[int, int, float, bool, bool, str]] = {
    "small": (8, 8, 3.0, False, True, _SMALL),
    "base": (12, 12, 4.0, True, False, _BASE),
}
EMBED_DIM = 768
PATCH_SIZE = 16
# Keys of the published files that are not the backbone's: ImageNet classifiers, DeiT's
# distillation token and head.
FOREIGN_KEYS = ("head.", "head_dist.", "pre_logits.", "dist_token")


class SmallViTAttention(Attention):
    """timm's multi-head self-attention with the scale 768^-0.5 instead of head_dim^-0.5: the first
    timm ViT-S, which fastreid's "small" follows."""

    qk_scale: ClassVar[float] = EMBED_DIM**-0.5

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        """B x N x C tokens -> B x N x C (no mask: ``attn_mask`` and ``is_causal`` are refused)."""
        if attn_mask is not None or is_causal:
            raise ValueError("SmallViTAttention attends to every token: no mask")
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.attn_drop.p if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.qk_scale)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class PatchEmbed(nn.Module):
    """Patches of 16 x 16 pixels every ``stride`` pixels, embedded by one convolution (``proj``).

    Args:
        stride: The stride (height, width).
    """

    def __init__(self, stride: tuple[int, int]) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, EMBED_DIM, kernel_size=PATCH_SIZE, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W -> N x (patches) x 768."""
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT-S/16 or ViT-B/16 on overlapping patches, returning the class token as N x 768 x 1 x 1.

    Args:
        img_size: (height, width) of the images, which fixes the patch grid.
        depth: "small" or "base".
        stride_size: The patch embedding's stride (height, width).
        drop_rate: Dropout after the position embedding and in the blocks.
        attn_drop_rate: Dropout on the attention weights.
        drop_path_rate: The stochastic depth rate of the last block (linear from 0).
        pretrain: Load ImageNet weights after building.
        pretrain_path: The weight file; "" = the published file for ``depth``.
    """

    @configurable
    def __init__(
        self,
        img_size: Sequence[int],
        depth: str = "base",
        stride_size: Sequence[int] = (16, 16),
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        pretrain: bool = False,
        pretrain_path: str = "",
    ) -> None:
        super().__init__()
        if depth not in VIT_SPECS:
            raise InvalidArgument(
                "depth", f"of the ViT must be one of {list(VIT_SPECS)}, got {depth!r}"
            )
        if len(img_size) != 2 or min(img_size) < PATCH_SIZE:
            raise InvalidArgument(
                "img_size", f"must be (height, width), each >= {PATCH_SIZE}, got {list(img_size)}"
            )
        if len(stride_size) != 2 or min(stride_size) <= 0:
            raise InvalidArgument(
                "stride_size", f"must be two positive ints (height, width), got {list(stride_size)}"
            )
        if pretrain and pretrain_path and not os.path.isfile(pretrain_path):
            raise InvalidArgument("pretrain_path", f"is not a file: {pretrain_path}")
        blocks, heads, mlp_ratio, qkv_bias, small_scale, url = VIT_SPECS[depth]
        self.depth = depth
        self.img_size = (int(img_size[0]), int(img_size[1]))
        self.grid = tuple(
            (size - PATCH_SIZE) // stride + 1 for size, stride in zip(self.img_size, stride_size)
        )
        self.out_channels = EMBED_DIM
        self.patch_embed = PatchEmbed((int(stride_size[0]), int(stride_size[1])))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, EMBED_DIM))
        self.pos_drop = nn.Dropout(p=drop_rate)
        rates = torch.linspace(0, drop_path_rate, blocks).tolist()
        norm = cast(type[nn.Module], functools.partial(nn.LayerNorm, eps=1e-6))
        attention = SmallViTAttention if small_scale else Attention
        self.blocks = nn.ModuleList(
            Block(
                EMBED_DIM,
                heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rate,
                norm_layer=norm,
                attn_layer=attention,
            )
            for rate in rates
        )
        self.norm = norm(EMBED_DIM)
        self._init_weights()
        if pretrain:
            self.load_imagenet(pretrain_path or find_cached_or_download([url]))

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """INPUT.SIZE_TRAIN, DEPTH, the ViT keys and the PRETRAIN keys of MODEL.BACKBONE.

        Raises:
            ConfigError: SIE_COE is not its default (no camera embedding here).
        """
        sie = float(VIT_CONFIG.value(cfg, "SIE_COE"))
        if sie != SIE_COE_DEFAULT:
            raise ConfigError(
                f"{VIT_CONFIG.full_key('SIE_COE')} is {sie}, but the side information (camera) "
                f"embedding of TransReID is not implemented (fastreid's build_vit_backbone does "
                f"not build one either); leave it at {SIE_COE_DEFAULT}"
            )
        args = ConfigArgs()
        args.set("img_size", list(cfg.INPUT.SIZE_TRAIN), "INPUT.SIZE_TRAIN")
        args.set("depth", cfg.MODEL.BACKBONE.DEPTH, "MODEL.BACKBONE.DEPTH")
        args.update_from(
            VIT_CONFIG.arguments(
                cfg,
                skip=("SIE_COE",),
                rename={
                    "DROP_RATIO": "drop_rate",
                    "ATT_DROP_RATE": "attn_drop_rate",
                    "DROP_PATH_RATIO": "drop_path_rate",
                },
            )
        )
        return args.update_from(BACKBONE_CONFIG.arguments(cfg, skip=("NAME", "FEAT_DIM", "NORM")))

    def _init_weights(self) -> None:
        """fastreid's: truncated normal (0.02) tokens and linear weights, zero biases, unit
        LayerNorms, Kaiming-normal (fan-out) patch embedding."""
        trunc_normal_(self.cls_token, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)
        proj = self.patch_embed.proj
        nn.init.normal_(proj.weight, 0.0, math.sqrt(2.0 / (PATCH_SIZE * PATCH_SIZE * EMBED_DIM)))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def load_imagenet(self, path: str) -> None:
        """Load published ViT weights: the position embedding resized (bilinear) to this grid,
        DeiT's distillation token dropped from it, a linear patch embedding reshaped; strict."""
        state = read_state_dict(path)
        weight = state.get("patch_embed.proj.weight")
        if weight is not None and weight.dim() < 4:
            state["patch_embed.proj.weight"] = weight.reshape(self.patch_embed.proj.weight.shape)
        pos = state.get("pos_embed")
        if pos is not None and pos.shape != self.pos_embed.shape:
            tokens = pos.shape[1]
            side = math.isqrt(tokens - 1)
            if side * side != tokens - 1:  # class and distillation tokens (DeiT)
                side = math.isqrt(tokens - 2)
                pos = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)
            state["pos_embed"] = resample_abs_pos_embed(
                pos,
                new_size=list(self.grid),
                old_size=[side, side],
                num_prefix_tokens=1,
                interpolation="bilinear",
                antialias=False,
            )
            logger.info(
                "resized the position embedding of %s from %dx%d to %dx%d",
                path,
                side,
                side,
                *self.grid,
            )
        load_pretrained(self, path, foreign_keys=FOREIGN_KEYS, state=state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W normalised images of the built size -> the N x 768 x 1 x 1 class token."""
        if tuple(x.shape[2:]) != self.img_size:
            raise ValueError(
                f"the ViT was built for {self.img_size[0]}x{self.img_size[1]} images "
                f"(INPUT.SIZE_TRAIN), got {x.shape[2]}x{x.shape[3]}: set INPUT.SIZE_TEST to "
                f"INPUT.SIZE_TRAIN"
            )
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[:, 0].reshape(x.shape[0], -1, 1, 1)


@BACKBONE_REGISTRY.register(config_block=VIT_CONFIG)
def build_vit_backbone(cfg: CfgNode) -> VisionTransformer:
    """The ViT of MODEL.BACKBONE (see :class:`VisionTransformer`) for INPUT.SIZE_TRAIN images, with
    its ImageNet weights if PRETRAIN.

    Args:
        cfg: The whole config.

    Returns:
        The backbone.
    """
    return VisionTransformer(cfg)
