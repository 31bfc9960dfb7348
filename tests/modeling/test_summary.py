"""The model summary: parameters and FLOPs of one test image, counted by hand on a small model,
logged when the trainer builds its model and when --eval-only does."""

import logging

import torch
from torch import nn

from reid.engine import DefaultTrainer, build_model_for_eval
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


def test_training_and_eval_only_log_the_summary(tiny_cfg, tmp_path, caplog):
    cfg = tiny_cfg("MODEL.HEADS.NUM_CLASSES", "6", "TEST.FLIP.ENABLED", "True")
    with caplog.at_level(logging.INFO, logger="reid.engine.defaults"):
        model = DefaultTrainer.build_model(cfg)
    flops = flops_per_image(model, (32, 16))
    params = sum(p.numel() for p in model.parameters())
    assert flops > 0 and model.training
    expected = (
        f"Model summary: Baseline: {params / 1e6:.2f}M parameters, {flops / 1e9:.2f} GFLOPs per "
        f"32x16 test image"
    )
    assert f"{expected} (x2 = {2 * flops / 1e9:.2f} with TEST.FLIP.ENABLED)" in caplog.messages
    torch.save({"model": model.state_dict(), "num_classes": 6}, tmp_path / "m.pth")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="reid.engine.defaults"):
        build_model_for_eval(tiny_cfg("MODEL.WEIGHTS", str(tmp_path / "m.pth")))
    assert expected in caplog.messages  # the tiny config without test flips
