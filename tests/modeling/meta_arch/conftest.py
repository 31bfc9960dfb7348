"""Two test losses with exactly known values, and loss sets made of them.

The meta-architectures take their loss set as an argument, so the tests build them from plain
arguments with these losses; nothing is registered.
"""

from collections.abc import Callable

import pytest
import torch.nn.functional as F

from reid.modeling.losses import LossSet
from reid.modeling.losses.base import FeatureLoss, ReidLoss
from reid.structures import OutputKeys


class LogitsCE(ReidLoss):
    """Cross-entropy on ``logits``."""

    log_name = "loss_test_cls"

    def forward(self, outputs, targets):
        return F.cross_entropy(self.read(outputs, OutputKeys.LOGITS), targets)


class FeatureEnergy(FeatureLoss):
    """The mean squared value of ``features``."""

    log_name = "loss_test_feat"

    def forward(self, outputs, targets):
        return self.features(outputs).pow(2).mean()


@pytest.fixture
def test_loss_set() -> Callable[..., LossSet]:
    """``make(ce=1.0, feat=1.0)``: a loss set of the two test losses with these weights."""

    def make(ce: float = 1.0, feat: float = 1.0) -> LossSet:
        losses = {"TestLogitsCE": LogitsCE(), "TestFeatureEnergy": FeatureEnergy()}
        return LossSet(losses, weights={"TestLogitsCE": ce, "TestFeatureEnergy": feat})

    return make
