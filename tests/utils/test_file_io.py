import json
import os

import pytest

from reid.utils.file_io import atomic_open, atomic_write_json


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
