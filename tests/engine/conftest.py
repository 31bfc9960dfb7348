"""Fixtures of the engine tests."""

import socket
from collections.abc import Callable

import pytest


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()``: a TCP port on 127.0.0.1 free now, for a process group's rendezvous."""

    def find() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return find
