"""inference_on_dataset's speed options: autocast (TEST.AMP), channels-last images, features kept
on the device."""

import pytest
import torch
from torch import nn

from reid.config import ConfigError, get_cfg
from reid.evaluation.evaluator import ReidEvaluator, inference_amp_dtype, inference_on_dataset

NUM_QUERY = 3


class ConvModel(nn.Module):
    """A 1x1 convolution pooled to a feature; records the autocast state and image layout."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        self.calls = []

    def forward(self, batch):
        images = batch["images"]
        self.calls.append(
            (
                torch.is_autocast_enabled("cpu"),
                torch.get_autocast_dtype("cpu"),
                images.is_contiguous(memory_format=torch.channels_last),
            )
        )
        return self.conv(images).mean((2, 3))


def _loader():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(8, 3, 4, 2, generator=g) * 255
    pids = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])
    return [
        {"images": images[s : s + 4], "targets": pids[s : s + 4], "camids": torch.arange(4) % 2}
        for s in (0, 4)
    ]


class KeepingEvaluator(ReidEvaluator):
    def process(self, batch, features):
        self.kept = getattr(self, "kept", []) + [features]
        super().process(batch, features)


def test_features_under_autocast_are_scored_in_float32():
    model = ConvModel()
    full = KeepingEvaluator(NUM_QUERY)
    inference_on_dataset(model, _loader(), full)
    half, flipped = KeepingEvaluator(NUM_QUERY), KeepingEvaluator(NUM_QUERY)
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN's bf16 kernels: see test_trainer
        inference_on_dataset(model, _loader(), half, amp_dtype=torch.bfloat16)
        inference_on_dataset(model, _loader(), flipped, flip=True, amp_dtype=torch.bfloat16)
    autocast = [c[0] for c in model.calls]
    assert autocast == [False] * 2 + [True] * 6 and model.calls[2][1] == torch.bfloat16
    assert [f.dtype for f in half.kept] == [torch.bfloat16] * 2  # the model's output
    assert [f.dtype for f in flipped.kept] == [torch.float32] * 2  # averaged in float32
    assert all(f.dtype == torch.float32 for f in half._features + flipped._features)
    expected = torch.cat(full.kept)
    torch.testing.assert_close(torch.cat(half._features), expected, rtol=0.02, atol=0.5)
    assert not torch.equal(torch.cat(half._features), expected)


def test_channels_last_images_reach_the_model():
    model = ConvModel().to(memory_format=torch.channels_last)
    inference_on_dataset(model, _loader(), ReidEvaluator(NUM_QUERY), channels_last=True)
    assert [c[2] for c in model.calls] == [True, True]


def test_test_amp_from_the_config():
    cfg = get_cfg()
    assert inference_amp_dtype(cfg) is None
    cfg.TEST.AMP.ENABLED = True
    assert inference_amp_dtype(cfg) == torch.bfloat16
    cfg.TEST.AMP.DTYPE = "float16"
    assert inference_amp_dtype(cfg) == torch.float16
    cfg.TEST.AMP.DTYPE = "half"
    with pytest.raises(
        ConfigError, match=r"TEST.AMP.DTYPE must be one of \['bfloat16', 'float16'\]"
    ):
        inference_amp_dtype(cfg)
