"""ResNeSt (Zhang et al., "ResNeSt: Split-Attention Networks", 2020): build_resnest_backbone.

The ResNeSt-D variant the ResNeSt authors published and fastreid builds: a deep stem (three 3x3
convs, ``stem_width`` 32 for 50x, 64 above), split attention with radix 2 in every bottleneck, the
3x3 average pool of a strided (or stage-opening) block after its split-attention conv ("avd"),
average-pool shortcuts. LAST_STRIDE 1 keeps layer4 at stride 1 with dilation 2 in its later blocks,
as fastreid does. Module names are the authors' (``conv1.0``, ``layer1.0.conv2.fc1``, ...), so
their published ImageNet weights (``resnest50-528c19ca.pth``, ...) and fastreid's checkpoints load
by name. fastreid's ResNeSt has no IBN, SE or non-local option: WITH_IBN / WITH_SE are errors here,
and WITH_NL (which fastreid's S50 configs inherit from Base-SBS/Base-AGW and fastreid ignores) is
ignored with a warning.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigError, InvalidArgument, configurable
from reid.modeling.layers import get_norm

from .build import BACKBONE_CONFIG, BACKBONE_REGISTRY
from .pretrained import find_cached_or_download, load_pretrained

logger = logging.getLogger(__name__)

_RELEASE = "https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/"

# depth -> (blocks per stage, stem width, the published ImageNet weights)
RESNEST_SPECS: dict[int, tuple[tuple[int, int, int, int], int, str]] = {
    50: ((3, 4, 6, 3), 32, _RELEASE + "resnest50-528c19ca.pth"),
    101: ((3, 4, 23, 3), 64, _RELEASE + "resnest101-22405ba7.pth"),
    200: ((3, 24, 36, 3), 64, _RELEASE + "resnest200-75117900.pth"),
    269: ((3, 30, 48, 8), 64, _RELEASE + "resnest269-0cc87c48.pth"),
}


def parse_resnest_depth(depth: str | int) -> int:
    """The ResNeSt depth from fastreid's spelling ("50x"), "50" or 50.

    Raises:
        InvalidArgument: Not one of the depths of ``RESNEST_SPECS``.

    >>> parse_resnest_depth("101x")
    101
    """
    text = str(depth).strip().lower().rstrip("x")
    if not text.isdigit() or int(text) not in RESNEST_SPECS:
        valid = ", ".join(f"'{d}x'" for d in RESNEST_SPECS)
        raise InvalidArgument("depth", f"of ResNeSt must be one of {valid}, got {depth!r}")
    return int(text)


class SplitAttention(nn.Module):
    """Split-attention 3x3 convolution: ``radix`` grouped conv outputs, weighted per channel by a
    softmax over the radix of an attention computed from their pooled sum.

    Args:
        in_channels: The input channels.
        channels: The output channels.
        stride: The conv's stride.
        dilation: The conv's dilation (and padding).
        norm: The norm layers (see :func:`get_norm`).
        radix: The number of splits.
        reduction: The attention's hidden width is ``max(in_channels * radix // reduction, 32)``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "BN",
        radix: int = 2,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        inter = max(in_channels * radix // reduction, 32)
        self.radix = radix
        self.conv = nn.Conv2d(
            in_channels,
            channels * radix,
            kernel_size=3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            groups=radix,
            bias=False,
        )
        self.bn0 = get_norm(norm, channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter, kernel_size=1)
        self.bn1 = get_norm(norm, inter)
        self.fc2 = nn.Conv2d(inter, channels * radix, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn0(self.conv(x)))
        batch, channels = x.shape[0], x.shape[1] // self.radix
        splits = torch.split(x, channels, dim=1)
        gap = F.adaptive_avg_pool2d(sum(splits[1:], splits[0]), 1)
        attention = self.fc2(self.relu(self.bn1(self.fc1(gap))))
        # B x (radix * C) -> softmax over the radix for every channel
        attention = attention.view(batch, 1, self.radix, channels).softmax(dim=2)
        weights = attention.reshape(batch, self.radix * channels, 1, 1)
        weighted = [w * s for w, s in zip(torch.split(weights, channels, dim=1), splits)]
        return sum(weighted[1:], weighted[0])


class ResNeStBottleneck(nn.Module):
    """1x1 conv -> split-attention 3x3 conv [-> 3x3 average pool of stride ``stride``] -> 1x1
    conv, plus the shortcut.

    Args:
        inplanes: Input channels.
        planes: The width; the output has ``planes * 4`` channels.
        stride: The block's stride (taken by the average pool).
        downsample: The shortcut's projection.
        dilation: The dilation of the split-attention conv.
        pool: Whether the block has the average pool ("avd": strided or stage-opening blocks).
        norm: The norm layers.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        pool: bool = False,
        norm: str = "BN",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = get_norm(norm, planes)
        self.conv2 = SplitAttention(planes, planes, 1 if pool else stride, dilation, norm)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if pool else None
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = get_norm(norm, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.bn1(self.conv1(x))))
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNeSt(nn.Module):
    """A ResNeSt trunk returning the layer4 feature map (stride 32, or 16 with last stride 1).

    Args:
        depth: 50, 101, 200 or 269 (or fastreid's "50x").
        last_stride: 1 (layer4 at stride 1, dilation 2 after its first block; fastreid's choice
            for ReID) or 2.
        norm: The norm layers (see :func:`reid.modeling.layers.get_norm`).
        pretrain: Load the published ImageNet weights (or ``pretrain_path``) after building.
        pretrain_path: The weight file to load; "" = the published file for this depth.
    """

    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    @configurable
    def __init__(
        self,
        depth: int | str,
        last_stride: int = 1,
        norm: str = "BN",
        pretrain: bool = False,
        pretrain_path: str = "",
    ) -> None:
        super().__init__()
        self.depth = parse_resnest_depth(depth)
        if last_stride not in (1, 2):
            raise InvalidArgument("last_stride", f"must be 1 or 2, got {last_stride}")
        if pretrain and pretrain_path and not os.path.isfile(pretrain_path):
            raise InvalidArgument("pretrain_path", f"is not a file: {pretrain_path}")
        blocks, stem, url = RESNEST_SPECS[self.depth]
        self.norm = norm
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False),
            get_norm(norm, stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, stride=1, padding=1, bias=False),
            get_norm(norm, stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem * 2, 3, stride=1, padding=1, bias=False),
        )
        self.bn1 = get_norm(norm, stem * 2)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.inplanes = stem * 2
        dilated = last_stride == 1
        self.layer1 = self._make_layer(64, blocks[0], 1, 1, opening_pool=False)
        self.layer2 = self._make_layer(128, blocks[1], 2, 1)
        self.layer3 = self._make_layer(256, blocks[2], 2, 1)
        self.layer4 = self._make_layer(512, blocks[3], 1 if dilated else 2, 2 if dilated else 1)
        self.out_channels = 512 * ResNeStBottleneck.expansion
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if pretrain:
            load_pretrained(self, pretrain_path or find_cached_or_download([url]))

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """DEPTH, LAST_STRIDE, NORM and the PRETRAIN keys of MODEL.BACKBONE.

        Raises:
            ConfigError: WITH_IBN or WITH_SE is set (fastreid's ResNeSt has neither).
        """
        block = cfg.MODEL.BACKBONE
        for key in ("WITH_IBN", "WITH_SE"):
            if block.get(key):
                raise ConfigError(
                    f"MODEL.BACKBONE.{key} is True, but build_resnest_backbone has no such blocks "
                    f"(neither has fastreid's); use build_resnet_backbone or set it False"
                )
        if block.get("WITH_NL"):
            logger.warning(
                "MODEL.BACKBONE.WITH_NL is True but build_resnest_backbone has no non-local "
                "blocks: ignored, as fastreid's build_resnest_backbone ignores it (its S50 "
                "configs inherit it from Base-SBS / Base-AGW)"
            )
        args = ConfigArgs()
        args.set("depth", block.DEPTH, "MODEL.BACKBONE.DEPTH")
        args.set("last_stride", block.LAST_STRIDE, "MODEL.BACKBONE.LAST_STRIDE")
        return args.update_from(BACKBONE_CONFIG.arguments(cfg, skip=("NAME", "FEAT_DIM")))

    def _make_layer(
        self, planes: int, blocks: int, stride: int, dilation: int, opening_pool: bool = True
    ) -> nn.Sequential:
        """A stage; its first block has dilation 1 (the later ones ``dilation``) and the average
        pool when strided or ``opening_pool`` (fastreid's ``is_first``)."""
        out = planes * ResNeStBottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            pool = stride if dilation == 1 else 1
            downsample = nn.Sequential(
                nn.AvgPool2d(pool, pool, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(self.inplanes, out, kernel_size=1, bias=False),
                get_norm(self.norm, out),
            )
        layers = [
            ResNeStBottleneck(
                self.inplanes,
                planes,
                stride,
                downsample,
                dilation=1,
                pool=stride > 1 or opening_pool,
                norm=self.norm,
            )
        ]
        self.inplanes = out
        layers += [
            ResNeStBottleneck(out, planes, dilation=dilation, norm=self.norm)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W normalised images -> the N x 2048 x h x w layer4 map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@BACKBONE_REGISTRY.register()
def build_resnest_backbone(cfg: CfgNode) -> ResNeSt:
    """The ResNeSt of MODEL.BACKBONE (DEPTH "50x", "101x", "200x", "269x"; see :class:`ResNeSt`),
    with its ImageNet weights if PRETRAIN.

    Args:
        cfg: The whole config.

    Returns:
        The backbone.
    """
    return ResNeSt(cfg)
