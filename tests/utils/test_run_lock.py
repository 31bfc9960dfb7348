"""One run per output folder: the lock names its holder, a dead holder's lock is taken over."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from reid.utils.run_lock import (
    LOCK_FILE,
    OutputDirInUseError,
    acquire_output_dir,
    held_output_dirs,
    release_output_dir,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from reid.utils.run_lock import acquire_output_dir
    acquire_output_dir({folder!r})
    print("locked", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def holder(tmp_path):
    """A process that holds the lock of tmp_path/run until killed."""
    folder = str(tmp_path / "run")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER.format(root=ROOT, folder=folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    yield folder, proc
    proc.kill()
    proc.wait()


def test_a_second_run_is_refused_naming_the_holder(holder):
    folder, proc = holder
    with pytest.raises(OutputDirInUseError) as info:
        acquire_output_dir(folder)
    message = str(info.value)
    assert f"OUTPUT_DIR {folder} is in use by another run (pid {proc.pid} on host " in message
    assert socket.gethostname() in message and "choose another OUTPUT_DIR" in message
    assert folder not in held_output_dirs()


def test_the_lock_of_a_killed_run_is_taken_over_with_a_message(holder):
    folder, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    message = acquire_output_dir(folder)
    try:
        assert message.startswith(f"Took over the lock {os.path.join(folder, LOCK_FILE)} left by")
        assert f"pid {proc.pid} on host {socket.gethostname()}" in message
        assert message.endswith("which is no longer running")
        info = json.load(open(os.path.join(folder, LOCK_FILE)))
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    finally:
        release_output_dir(folder)
    assert not os.path.exists(os.path.join(folder, LOCK_FILE))


def test_the_lock_is_reentrant_in_one_process_and_released_at_last(tmp_path):
    folder = str(tmp_path / "run")
    assert acquire_output_dir(folder) is None  # a fresh folder: nothing taken over
    assert acquire_output_dir(folder) is None
    release_output_dir(folder)
    assert os.path.exists(os.path.join(folder, LOCK_FILE))
    assert folder in held_output_dirs()
    release_output_dir(folder)
    assert not os.path.exists(os.path.join(folder, LOCK_FILE))
    assert folder not in held_output_dirs()
    release_output_dir(folder)  # not held: nothing to do
