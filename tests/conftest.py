"""Shared test settings: small thread pools so the suite behaves on a 2-core machine."""
import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
