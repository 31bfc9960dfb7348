"""Two test-only losses with exactly known values, registered for the duration of one test."""

import pytest
import torch


class LogitsCE(torch.nn.Module):
    """Test loss reading ``logits`` (cross-entropy), config block CE."""

    cfg_key = "CE"
    log_name = "loss_test_cls"

    def __init__(self, cfg) -> None:
        super().__init__()

    def forward(self, outputs, targets):
        return torch.nn.functional.cross_entropy(outputs["logits"], targets)


class FeatureEnergy(torch.nn.Module):
    """Test loss reading ``features`` (mean squared value), config block TRI."""

    cfg_key = "TRI"
    log_name = "loss_test_feat"

    def __init__(self, cfg) -> None:
        super().__init__()

    def forward(self, outputs, targets):
        return outputs["features"].pow(2).mean()


@pytest.fixture
def test_losses(monkeypatch):
    """Registers the two test losses for one test only (the real registry is left as it was)."""
    from reid.modeling.losses import LOSS_REGISTRY

    monkeypatch.setitem(LOSS_REGISTRY._obj_map, "TestLogitsCE", LogitsCE)
    monkeypatch.setitem(LOSS_REGISTRY._obj_map, "TestFeatureEnergy", FeatureEnergy)
    return ["TestLogitsCE", "TestFeatureEnergy"]
