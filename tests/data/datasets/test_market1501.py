import os
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from yacs.config import CfgNode

from reid.data.datasets import build_dataset, resolve_root
from reid.data.datasets.bases import (
    DatasetCountWarning,
    DatasetFormatError,
    DatasetNotFoundError,
    Record,
)
from reid.data.datasets.market1501 import Market1501


def reference_parse(
    files: dict[str, list[str]], base: str, folder: str, split: str
) -> list[Record]:
    """The Market rule written out independently: -1 dropped, 0000 only in the gallery, camera
    c1 -> 0."""
    out = []
    for name in sorted(files[folder]):
        m = re.match(r"(-?\d+)_c(\d)", name)
        assert m is not None, name
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1 or (pid == 0 and split != "gallery"):
            continue
        out.append(Record(os.path.join(base, folder, name), pid, cam - 1, "Market1501"))
    return out


def test_parses_splits_exactly(
    make_market: Callable[..., str],
    market_files: dict[str, list[str]],
    quietly: Callable[..., Any],
    tmp_path: Path,
) -> None:
    base = make_market()
    ds = quietly(lambda: Market1501(str(tmp_path)))
    assert ds.dataset_dir == base
    assert ds.train == reference_parse(market_files, base, "bounding_box_train", "train")
    assert ds.query == reference_parse(market_files, base, "query", "query")
    assert ds.gallery == reference_parse(market_files, base, "bounding_box_test", "gallery")
    # junk dropped, distractors kept in the gallery only
    assert all(r.pid != -1 for r in ds.train + ds.query + ds.gallery)
    assert sorted(r.pid for r in ds.gallery) == [0, 0, 1, 1, 3, 3]
    assert {r.camid for r in ds.gallery if r.pid == 0} == {0, 5}
    assert [r.camid for r in ds.train] == [0, 1, 2, 5, 0]
    assert [r.path for r in ds.gallery] == sorted(r.path for r in ds.gallery)


def test_distractor_in_train_or_query_is_dropped(
    make_market: Callable[..., str],
    tmp_path: Path,
    market_files: dict[str, list[str]],
    quietly: Callable[..., Any],
) -> None:
    files = market_files
    files["query"].append("0000_c2s1_000001_01.jpg")
    files["bounding_box_train"].append("0000_c2s1_000002_01.jpg")
    make_market(files=files)
    ds = quietly(lambda: Market1501(str(tmp_path)))
    assert 0 not in {r.pid for r in ds.train + ds.query}


def test_summary_table(
    make_market: Callable[..., str], tmp_path: Path, quietly: Callable[..., Any]
) -> None:
    make_market()
    ds = quietly(lambda: Market1501(str(tmp_path)))
    lines = ds.summary().splitlines()
    assert lines[0].startswith("=> Market1501 loaded from ")
    rows = {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[3:])
    }
    assert rows == {"train": ["3", "5", "4"], "query": ["2", "2", "2"], "gallery": ["3", "6", "5"]}


def test_count_warning_quotes_official_counts(
    make_market: Callable[..., str], tmp_path: Path
) -> None:
    make_market()
    with pytest.warns(DatasetCountWarning) as record:
        Market1501(str(tmp_path))
    message = str(record[0].message)
    assert "train has 3 ids / 5 images (official: 751 ids / 12,936 images)" in message
    assert "query has 2 ids / 2 images (official: 750 ids / 3,368 images)" in message
    assert "gallery has 3 ids / 6 images (official: 751 ids / 15,913 images)" in message


def test_empty_split_warns(
    make_market: Callable[..., str], tmp_path: Path, market_files: dict[str, list[str]]
) -> None:
    files = market_files
    files["query"] = []
    make_market(files=files)
    with pytest.warns(DatasetCountWarning) as record:
        Market1501(str(tmp_path))
    messages = [str(w.message) for w in record]
    assert any(m.endswith("the query split is empty") for m in messages), messages


def test_unparseable_name_is_an_error_naming_the_file(
    make_market: Callable[..., str],
    tmp_path: Path,
    market_files: dict[str, list[str]],
    quietly: Callable[..., Any],
) -> None:
    files = market_files
    files["bounding_box_test"].append("0003_cam5_0001.jpg")
    make_market(files=files)
    with pytest.raises(DatasetFormatError, match=r"bounding_box_test/0003_cam5_0001\.jpg"):
        quietly(lambda: Market1501(str(tmp_path)))


def test_camera_out_of_range_is_an_error(
    make_market: Callable[..., str],
    tmp_path: Path,
    market_files: dict[str, list[str]],
    quietly: Callable[..., Any],
) -> None:
    files = market_files
    files["query"].append("0003_c7s1_000100_01.jpg")
    make_market(files=files)
    with pytest.raises(
        DatasetFormatError, match=r"camera 7 of .*0003_c7s1_000100_01\.jpg is outside 1\.\.6"
    ):
        quietly(lambda: Market1501(str(tmp_path)))


def test_non_image_files_are_ignored(
    make_market: Callable[..., str], tmp_path: Path, quietly: Callable[..., Any]
) -> None:
    base = make_market()
    open(os.path.join(base, "bounding_box_test", "Thumbs.db"), "w").close()
    ds = quietly(lambda: Market1501(str(tmp_path)))
    assert len(ds.gallery) == 6


def test_missing_split_folder_names_it_and_shows_layout(
    make_market: Callable[..., str], tmp_path: Path
) -> None:
    base = make_market()
    shutil.rmtree(os.path.join(base, "query"))
    with pytest.raises(DatasetNotFoundError) as err:
        Market1501(str(tmp_path))
    text = str(err.value)
    assert os.path.join(base, "query") in text and "is incomplete" in text
    assert "expected layout" in text and "bounding_box_train/" in text


def test_missing_dataset_folder_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        Market1501(str(tmp_path))
    text = str(err.value)
    assert os.path.join(str(tmp_path), "Market-1501-v15.09.15") in text
    assert "expected layout" in text and "bounding_box_test/" in text


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    missing = os.path.join(str(tmp_path), "nowhere")
    with pytest.raises(
        DatasetNotFoundError, match=r"the data root .*nowhere does not exist.*REID_DATASETS"
    ):
        Market1501(missing)


def test_root_may_be_the_dataset_folder_itself(
    make_market: Callable[..., str], tmp_path: Path, quietly: Callable[..., Any]
) -> None:
    base = make_market()
    a = quietly(lambda: Market1501(str(tmp_path)))
    b = quietly(lambda: Market1501(base))
    assert a.dataset_dir == b.dataset_dir == base
    assert a.train == b.train and a.gallery == b.gallery


def test_alternative_folder_name(
    make_market: Callable[..., str], tmp_path: Path, quietly: Callable[..., Any]
) -> None:
    base = make_market(folder="market1501/Market-1501-v15.09.15")
    assert quietly(lambda: Market1501(str(tmp_path))).dataset_dir == base


def test_root_resolution_order(
    make_market: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cfg_for: Callable[..., CfgNode],
) -> None:
    cfg = cfg_for(root="")
    monkeypatch.delenv("REID_DATASETS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_root(cfg) == os.path.join(str(tmp_path), "datasets")
    monkeypatch.setenv("REID_DATASETS", str(tmp_path / "from_env"))
    assert resolve_root(cfg) == str(tmp_path / "from_env")
    cfg.DATASETS.ROOT = str(tmp_path / "from_cfg")
    assert resolve_root(cfg) == str(tmp_path / "from_cfg")
    cfg.DATASETS.ROOT = "~/x"
    assert resolve_root(cfg) == os.path.join(os.path.expanduser("~"), "x")


def test_build_dataset_uses_env_root(
    make_market: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cfg_for: Callable[..., CfgNode],
) -> None:
    make_market(parent=str(tmp_path / "env_root"))
    monkeypatch.setenv("REID_DATASETS", str(tmp_path / "env_root"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetCountWarning)
        ds = build_dataset("Market1501", cfg_for(root=""))
    assert ds.dataset_dir == str(tmp_path / "env_root" / "Market-1501-v15.09.15")
    assert len(ds.train) == 5
