"""The model summary: parameters and FLOPs of one test image, counted by hand on a small model,
logged when a model is built (training and --eval-only both build through build_model)."""

import logging

import torch
from torch import nn

from reid.modeling import build_model
from reid.modeling.summary import count_parameters, describe_model, flops_per_image


class Tiny(nn.Module):
    """conv 3->4 (3x3, same padding), global average, linear 4->2; BN to check the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, batch):
        x = self.bn(self.conv(batch["images"]))
        return self.fc(x.mean((2, 3)))


def test_flops_and_parameters_by_hand():
    model = Tiny().train()
    before = model.bn.running_mean.clone()
    height, width = 8, 6
    conv = 2 * (3 * 3 * 3) * 4 * height * width  # a multiply-add per weight and output pixel
    linear = 2 * 4 * 2
    assert flops_per_image(model, (height, width)) == conv + linear
    assert model.training and torch.equal(model.bn.running_mean, before)  # mode and stats kept
    assert count_parameters(model) == (3 * 9 * 4 + 4) + 8 + (8 + 2)
    assert describe_model(model, (8, 6)) == (
        f"Tiny: 0.00M parameters, {(conv + linear) / 1e9:.2f} GFLOPs per 8x6 test image"
    )
    assert describe_model(model, (8, 6), flip=True).endswith(
        "test image (x2 = 0.00 with TEST.FLIP.ENABLED)"
    )


def test_building_a_model_logs_its_size_and_cost(tiny_cfg, caplog):
    cfg = tiny_cfg("MODEL.HEADS.NUM_CLASSES", "6", "TEST.FLIP.ENABLED", "True")
    with caplog.at_level(logging.INFO, logger="reid.modeling.meta_arch.build"):
        model = build_model(cfg)
    flops = flops_per_image(model, (32, 16))
    params = sum(p.numel() for p in model.parameters())
    assert flops > 0 and model.training
    expected = (
        f"Built Baseline: {params / 1e6:.2f}M parameters, {flops / 1e9:.2f} GFLOPs per 32x16 test "
        f"image (x2 = {2 * flops / 1e9:.2f} with TEST.FLIP.ENABLED) on cpu"
    )
    assert expected in caplog.messages
