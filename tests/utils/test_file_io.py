import errno
import json
import os
import stat
import tempfile

import pytest
import torch

from reid.utils import file_io
from reid.utils.file_io import (
    DiskFullError,
    atomic_open,
    atomic_torch_save,
    atomic_write_json,
    remove_stale_temp_files,
)


def test_atomic_write_json(tmp_path):
    path = tmp_path / "sub" / "r.json"
    atomic_write_json(str(path), {"b": 1, "a": [1.5]})
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}
    assert os.listdir(path.parent) == ["r.json"]


def test_atomic_write_json_keeps_key_order_and_old_file_on_error(tmp_path):
    path = tmp_path / "results.json"
    atomic_write_json(str(path), {"B": {"mAP": 3.0, "Rank-1": 4.0}})
    assert list(json.loads(path.read_text())["B"]) == ["mAP", "Rank-1"]
    with pytest.raises(TypeError):
        atomic_write_json(str(path), {"C": object()})
    assert json.loads(path.read_text()) == {"B": {"mAP": 3.0, "Rank-1": 4.0}}
    assert os.listdir(tmp_path) == ["results.json"]


def test_error_keeps_old_content_and_removes_temp(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(str(path)) as f:
            f.write("new, half written")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.txt"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_permissions_of_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(str(tmp_path / "r.json"), {"a": 1})
        atomic_torch_save({"w": torch.zeros(2)}, str(tmp_path / "m.pth"))
    finally:
        os.umask(old)
    for name in ("r.json", "m.pth"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


@pytest.fixture
def full_disk(monkeypatch):
    """Temporary files whose writes go to /dev/full: the kernel answers ENOSPC, as on a full disk
    (the temporary file itself exists, so the cleanup is exercised too)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, path = real(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), path

    monkeypatch.setattr(file_io.tempfile, "mkstemp", mkstemp)


def test_a_full_disk_is_an_error_naming_the_file_and_the_old_file_stays(tmp_path, full_disk):
    path = tmp_path / "model.pth"
    path.write_bytes(b"the previous version")
    with pytest.raises(DiskFullError, match="no space left on device writing .*model.pth") as info:
        atomic_torch_save({"w": torch.zeros(1000)}, str(path))
    assert info.value.errno == errno.ENOSPC
    assert "its previous version is intact" in str(info.value)
    assert path.read_bytes() == b"the previous version"
    assert os.listdir(tmp_path) == ["model.pth"]  # the partial temporary file is gone
    with pytest.raises(DiskFullError, match="results.json .*nothing was written there"):
        atomic_write_json(str(tmp_path / "results.json"), {"a": 1})


def test_stale_temporary_files_are_removed(tmp_path, caplog):
    stale = tmp_path / ".model_0005.pth.k3j_9xq2.tmp"
    stale.write_bytes(b"\0" * 2048)
    keep = ["model_0005.pth", ".hidden", "notes.tmp", ".a.b.tmp"]
    for name in keep:
        (tmp_path / name).write_text("x")
    with caplog.at_level("INFO", logger="reid"):
        assert remove_stale_temp_files(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == sorted(keep)
    assert "partial file left by an interrupted write" in caplog.text
    assert remove_stale_temp_files(str(tmp_path / "absent")) == []
