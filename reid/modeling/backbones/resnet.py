"""ResNet 18/34/50/101 for re-identification, on torchvision's residual blocks.

Options: the stride of layer4, the norm (BN / syncBN / FrozenBN / GN), IBN-a (instance norm on
half the channels of the first norm of every block of layer1-layer3), squeeze-and-excitation
before each residual sum, non-local blocks after the last blocks of layer2 and layer3 (fastreid's
placement), ImageNet weights (see ``pretrained``). Module names are torchvision's (``conv1``,
``bn1``, ``layer1.0.conv1``, ...) and, for the IBN blocks, IBN-Net's (``layer1.0.bn1.IN``,
``layer1.0.bn1.BN``), so both published weight layouts load by name. The classifier (``fc``) is
left out: the output is the layer4 feature map.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence

import torch
import torchvision.models.resnet as tv_resnet
from torch import nn
from yacs.config import CfgNode

from reid.config.schema import ConfigArgs, ConfigBlock, InvalidArgument, Key, configurable
from reid.modeling.layers import IBN, NonLocalBlock, SELayer, get_norm

from .build import BACKBONE_CONFIG, BACKBONE_REGISTRY
from .pretrained import find_published_file, load_pretrained

logger = logging.getLogger(__name__)

RESNET_CONFIG = ConfigBlock(
    "MODEL.BACKBONE",
    "ResNet backbones (build_resnet_backbone): depth, last stride, IBN-a, SE, non-local.",
    {
        "DEPTH": Key(
            "50x",
            (
                'Depth (fastreid\'s spelling; 50 works too): ResNet "18x", "34x", "50x", "101x"; '
                'ResNeSt "50x", "101x", "200x", "269x"; ViT "small" or "base".'
            ),
        ),
        "LAST_STRIDE": Key(
            1,
            (
                "Stride of the last stage: 1 keeps a 16x8 feature map at 256x128 input (the "
                "ReID choice), 2 is ImageNet's."
            ),
        ),
        "WITH_IBN": Key(
            False,
            (
                "IBN-a: instance norm on half the channels of the first norm of every block "
                "of layer1-layer3."
            ),
        ),
        "WITH_SE": Key(
            False,
            "Squeeze-and-excitation (reduction 16) before each residual sum.",
        ),
        "WITH_NL": Key(
            False,
            (
                "Non-local blocks after the last blocks of layer2 and layer3 (2 and 3 for "
                "34x/50x, 2 and 9 for 101x, 1 and 1 for 18x)."
            ),
        ),
        "STEM_POOL": Key(
            "ceil",
            (
                "The stem's 3x3 stride-2 max-pool: \"ceil\" = no padding, ceil_mode (fastreid's "
                'ResNet; its checkpoints need it), "padded" = padding 1 (torchvision\'s ResNet, '
                "reid's Base files). Same output size on even inputs, windows shifted by one pixel."
            ),
        ),
        "NL_INTER_CHANNELS": Key(
            1,
            (
                "Channels of the non-local blocks' theta / phi / g maps: 1 = fastreid's Non_local "
                "(inter_channels = reduc_ratio // reduc_ratio) and the AGW authors' code, 0 = "
                "half the block's input channels (Wang et al.; reid's Base files). The AGW "
                "network has 25.1 M parameters with 1, 32.5 M with half."
            ),
        ),
        "NL_INIT": Key(
            "pytorch",
            (
                "Initialisation of the non-local blocks' convolutions: \"pytorch\" = PyTorch's "
                'default (fastreid adds the blocks after initialising the ResNet), "kaiming" = '
                "Kaiming-normal fan-out like every other conv of the backbone (reid's Base files). "
                "The norm closing each block starts at zero either way."
            ),
        ),
    },
)

STEM_POOLS = ("ceil", "padded")
NL_INITS = ("pytorch", "kaiming")


class _ReIDBlock:
    """What the ReID blocks add to torchvision's: an IBN-a first norm, squeeze-and-excitation on
    the residual branch, and changing the block's stride in place (on ``strided_conv``)."""

    strided_conv: str
    bn1: nn.Module
    downsample: nn.Sequential | None
    relu: nn.Module
    expansion: int

    def _add_ibn_se(self, planes: int, norm: str, ibn: bool, se: bool) -> None:
        if ibn:
            self.bn1 = IBN(planes, norm)
        self.se = SELayer(planes * self.expansion) if se else None

    def set_stride(self, stride: int) -> None:
        """Change the block's spatial stride in place (same parameters)."""
        getattr(self, self.strided_conv).stride = (stride, stride)
        if self.downsample is not None:
            conv = self.downsample[0]
            assert isinstance(conv, nn.Conv2d)  # conv1x1, then the norm
            conv.stride = (stride, stride)
        self.stride = stride

    def _merge(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class BasicBlock(_ReIDBlock, tv_resnet.BasicBlock):
    """torchvision's BasicBlock with optional IBN-a first norm and squeeze-and-excitation.

    Args:
        inplanes: Input channels.
        planes: Output channels (``planes * expansion``, expansion 1).
        stride: The stride of the first conv.
        downsample: The shortcut's projection, when the shape changes.
        norm: The norm layers (see :func:`reid.modeling.layers.get_norm`).
        ibn: IBN-a as the first norm.
        se: Squeeze-and-excitation before the residual sum.
    """

    strided_conv = "conv1"

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: str = "BN",
        ibn: bool = False,
        se: bool = False,
    ) -> None:
        super().__init__(
            inplanes, planes, stride, downsample, norm_layer=functools.partial(get_norm, norm)
        )
        self._add_ibn_se(planes, norm, ibn, se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self._merge(self.bn2(self.conv2(out)), x)


class Bottleneck(_ReIDBlock, tv_resnet.Bottleneck):
    """torchvision's Bottleneck (stride on the 3x3 conv) with optional IBN-a first norm and SE.

    Args: as :class:`BasicBlock`; the output has ``planes * 4`` channels.
    """

    strided_conv = "conv2"

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm: str = "BN",
        ibn: bool = False,
        se: bool = False,
    ) -> None:
        super().__init__(
            inplanes, planes, stride, downsample, norm_layer=functools.partial(get_norm, norm)
        )
        self._add_ibn_se(planes, norm, ibn, se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self._merge(self.bn3(self.conv3(out)), x)


Block = type[BasicBlock] | type[Bottleneck]

# depth -> (block, blocks per stage)
RESNET_SPECS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}

# depth -> non-local blocks after the last n blocks of layer1..layer4 (fastreid's counts for 50/101;
# at most the stage length for 18/34, where fastreid has none).
NL_PER_STAGE: dict[int, tuple[int, int, int, int]] = {
    18: (0, 1, 1, 0),
    34: (0, 2, 3, 0),
    50: (0, 2, 3, 0),
    101: (0, 2, 9, 0),
}

# IBN-a: the first norm of every block of layer1..layer3 is IBN.
IBN_STAGES = (True, True, True, False)


def parse_depth(depth: str | int) -> int:
    """The ResNet depth from fastreid's spelling ("50x"), "50" or 50.

    Raises:
        InvalidArgument: Not one of the depths of ``RESNET_SPECS``.

    >>> parse_depth("50x"), parse_depth("101"), parse_depth(18)
    (50, 101, 18)
    """
    text = str(depth).strip().lower().rstrip("x")
    if not text.isdigit() or int(text) not in RESNET_SPECS:
        valid = ", ".join(f"'{d}x'" for d in RESNET_SPECS)
        raise InvalidArgument("depth", f"must be one of {valid}, got {depth!r}")
    return int(text)


class ResNet(nn.Module):
    """A ResNet trunk returning the layer4 feature map (stride 32, or 16 with last stride 1).

    Args:
        depth: 18, 34, 50 or 101 (or fastreid's "50x").
        last_stride: The stride of layer4: 1 (the ReID choice) or 2 (ImageNet's).
        norm: The norm layers (see :func:`reid.modeling.layers.get_norm`).
        with_ibn: IBN-a in layer1-layer3.
        with_se: Squeeze-and-excitation (reduction 16) in every block.
        with_nl: Non-local blocks after the last blocks of layer2 and layer3.
        pretrain: Load ImageNet weights after building (False by default here; the config's
            MODEL.BACKBONE.PRETRAIN defaults to True, as fastreid's).
        pretrain_path: The weight file to load; "" = the published file for this depth and IBN
            setting (see :func:`find_published_file`).
        stem_pool: The stem's max-pool: "ceil" (fastreid's: no padding, ceil_mode) or "padded"
            (torchvision's: padding 1).
        nl_inter_channels: The non-local blocks' inner channels: 1 (fastreid's), or 0 = half
            their input channels (Wang et al.).
        nl_init: The non-local convs' initialisation: "pytorch" (PyTorch's default, fastreid's) or
            "kaiming" (Kaiming-normal fan-out, as the backbone's convs).
    """

    config_block = RESNET_CONFIG
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
        with_ibn: bool = False,
        with_se: bool = False,
        with_nl: bool = False,
        pretrain: bool = False,
        pretrain_path: str = "",
        stem_pool: str = "ceil",
        nl_inter_channels: int = 1,
        nl_init: str = "pytorch",
    ) -> None:
        super().__init__()
        self.depth = parse_depth(depth)
        if stem_pool not in STEM_POOLS:
            raise InvalidArgument(
                "stem_pool", f"must be one of {list(STEM_POOLS)}, got {stem_pool!r}"
            )
        if nl_inter_channels < 0:
            raise InvalidArgument(
                "nl_inter_channels",
                f"must be >= 0 (0 = half the input channels), got {nl_inter_channels}",
            )
        if nl_init not in NL_INITS:
            raise InvalidArgument("nl_init", f"must be one of {list(NL_INITS)}, got {nl_init!r}")
        if last_stride not in (1, 2):
            raise InvalidArgument("last_stride", f"must be 1 or 2, got {last_stride}")
        if pretrain and pretrain_path and not os.path.isfile(pretrain_path):
            raise InvalidArgument("pretrain_path", f"is not a file: {pretrain_path}")
        block, blocks = RESNET_SPECS[self.depth]
        self.norm = norm
        self.with_se = with_se
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = get_norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        if stem_pool == "ceil":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        else:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        strides = (1, 2, 2, last_stride)
        for i, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), blocks, strides)):
            self.add_module(
                f"layer{i + 1}",
                self._make_layer(block, planes, n, stride, with_ibn and IBN_STAGES[i]),
            )
        self.out_channels = 512 * block.expansion
        # "pytorch": the non-local blocks are added after the ResNet's initialisation (fastreid's
        # order); "kaiming": before it, which then covers them too.
        if nl_init == "pytorch":
            self._init_weights()
        self.nl_after = (
            self._add_non_local_blocks(block, nl_inter_channels or None) if with_nl else {}
        )
        if nl_init == "kaiming":
            self._init_weights()
        if pretrain:
            path = pretrain_path or find_published_file(self.depth, with_ibn)
            load_pretrained(self, path, new_modules=self.added_module_prefixes())

    @classmethod
    def from_config(cls, cfg: CfgNode) -> ConfigArgs:
        """The arguments from MODEL.BACKBONE (its ResNet keys, NORM and the PRETRAIN keys).

        Args:
            cfg: The whole config.
        """
        args = RESNET_CONFIG.arguments(cfg)
        return args.update_from(BACKBONE_CONFIG.arguments(cfg, skip=("NAME", "FEAT_DIM")))

    def _make_layer(
        self, block: Block, planes: int, blocks: int, stride: int, ibn: bool
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                tv_resnet.conv1x1(self.inplanes, planes * block.expansion, stride),
                get_norm(self.norm, planes * block.expansion),
            )
        layers = [
            block(
                self.inplanes, planes, stride, downsample, norm=self.norm, ibn=ibn, se=self.with_se
            )
        ]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, norm=self.norm, ibn=ibn, se=self.with_se)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def _add_non_local_blocks(
        self, block: Block, inter_channels: int | None
    ) -> dict[int, list[int]]:
        """Add ``NL_<stage>``: ``NL_<stage>[str(i)]`` runs after block i of layer<stage>.

        Returns:
            Stage -> the indices of the blocks followed by a non-local block.
        """
        nl_after: dict[int, list[int]] = {}
        for stage, (layer, count) in enumerate(zip(self.stages(), NL_PER_STAGE[self.depth]), 1):
            if count == 0:
                continue
            positions = list(range(len(layer) - count, len(layer)))
            channels = 64 * 2 ** (stage - 1) * block.expansion
            blocks = nn.ModuleDict(
                {str(p): NonLocalBlock(channels, self.norm, inter_channels) for p in positions}
            )
            self.add_module(f"NL_{stage}", blocks)
            nl_after[stage] = positions
        return nl_after

    def added_module_prefixes(self) -> list[str]:
        """Key prefixes of the modules an ImageNet ResNet does not have (non-local, SE)."""
        prefixes = [f"NL_{stage}." for stage in self.nl_after]
        if self.with_se:
            stages = enumerate(self.stages(), 1)
            prefixes += [f"layer{s}.{i}.se." for s, layer in stages for i in range(len(layer))]
        return prefixes

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def stages(self) -> Sequence[nn.Sequential]:
        """layer1..layer4."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W normalised images -> the N x ``out_channels`` x h x w layer4 map."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage, layer in enumerate(self.stages(), start=1):
            if stage not in self.nl_after:
                x = layer(x)
                continue
            nl_blocks = getattr(self, f"NL_{stage}")
            for i, block in enumerate(layer):
                x = block(x)
                if str(i) in nl_blocks:
                    x = nl_blocks[str(i)](x)
        return x


def set_stage_stride(stage: nn.Sequential, stride: int) -> None:
    """Change the stride of a ResNet stage (that of its first block) in place, same parameters.

    Args:
        stage: A stage of :class:`ResNet` (``layer1`` .. ``layer4``) or a copy of one.
        stride: The new stride.
    """
    first = stage[0]
    if not isinstance(first, _ReIDBlock):
        raise TypeError(f"expected a stage of reid's ResNet, whose first block is {first!r}")
    first.set_stride(stride)


@BACKBONE_REGISTRY.register(config_block=RESNET_CONFIG)
def build_resnet_backbone(cfg: CfgNode) -> ResNet:
    """The ResNet of MODEL.BACKBONE (see :class:`ResNet`), with its ImageNet weights if PRETRAIN.

    Args:
        cfg: The whole config.

    Returns:
        The backbone.
    """
    return ResNet(cfg)
