"""Single-threaded torch for these tests: tiny convolutions run several times faster on one
thread than on two when other test processes share the machine's cores."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
