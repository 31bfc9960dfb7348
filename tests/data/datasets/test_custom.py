import os
from collections.abc import Callable
from pathlib import Path

import pytest
from yacs.config import CfgNode

from reid.data.datasets import build_dataset, build_train_records
from reid.data.datasets.bases import DatasetCountWarning, DatasetFormatError, DatasetNotFoundError
from reid.data.datasets.custom import CustomDataset


def test_market_layout_any_suffix_and_extension(
    tmp_path: Path, write_image: Callable[..., str]
) -> None:
    base = tmp_path / "custom"
    for sub, name in [
        ("bounding_box_train", "0007_c2_frame88.jpg"),
        ("bounding_box_train", "0003_c12_x.PNG"),
        ("bounding_box_train", "-1_c1_bad.jpg"),
        ("query", "0101_c1_q.png"),
        ("bounding_box_test", "0101_c3_g.bmp"),
        ("bounding_box_test", "0000_c1_d.jpg"),
    ]:
        write_image(str(base / sub / name))
    ds = CustomDataset(str(tmp_path))  # no official counts: no warning
    assert [(os.path.basename(r.path), r.pid, r.camid) for r in ds.train] == [
        ("0003_c12_x.PNG", 3, 11),
        ("0007_c2_frame88.jpg", 7, 1),
    ]
    assert [(r.pid, r.camid) for r in ds.query] == [(101, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(0, 0), (101, 2)]
    assert {r.dataset for r in ds.train} == {"Custom"}
    assert [r.pid for r in ds.training_records(combine_all=True)] == [
        3,
        7,
        101,
        101,
    ]  # distractor 0 left out


def test_market_layout_bad_name(tmp_path: Path, write_image: Callable[..., str]) -> None:
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        os.makedirs(tmp_path / "custom" / sub)
    write_image(str(tmp_path / "custom" / "query" / "person7_cam1.jpg"))
    with pytest.raises(
        DatasetFormatError,
        match=r"cannot parse the file name .*query/person7_cam1\.jpg; expected names like 0007_c2",
    ):
        CustomDataset(str(tmp_path))


def test_csv_with_header_and_relative_paths(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    cfg_for: Callable[..., CfgNode],
) -> None:
    folder = tmp_path / "mine"
    for n in ("a", "b", "q", "g", "g2"):
        write_image(str(folder / "imgs" / f"{n}.jpg"))
    write_text(
        str(folder / "list.csv"),
        [
            "path,pid,camid,split",
            "imgs/b.jpg,0,1,train",
            "imgs/a.jpg,0,0,train",
            "imgs/q.jpg,5,0,query",
            "imgs/g.jpg,5,2,gallery",
            f"{folder / 'imgs' / 'g2.jpg'},0,1,gallery",
            "",
        ],
    )
    cfg = cfg_for(
        DATASETS__CUSTOM__DIR="mine",
        DATASETS__CUSTOM__CSV="list.csv",
        DATASETS__NAMES=["Custom"],
        DATASETS__COMBINEALL=True,
    )
    ds = build_dataset("Custom", cfg)
    assert [(os.path.relpath(r.path, str(folder)), r.pid, r.camid) for r in ds.train] == [
        ("imgs/a.jpg", 0, 0),
        ("imgs/b.jpg", 0, 1),
    ]
    assert [(r.pid, r.camid) for r in ds.query] == [(5, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(5, 2), (0, 1)]  # g.jpg, g2.jpg
    records, num_classes = build_train_records(cfg)  # pid 0 is an ordinary identity in a CSV
    assert num_classes == 2 and len(records) == 5


def test_csv_absolute_dir_without_header(
    tmp_path: Path, write_image: Callable[..., str], write_text: Callable[..., str]
) -> None:
    folder = tmp_path / "elsewhere"
    write_image(str(folder / "x.jpg"))
    write_text(str(folder / "l.csv"), ["x.jpg,3,0,train"])
    with pytest.warns(DatasetCountWarning) as record:
        ds = CustomDataset("/nonexistent-root", folder=str(folder), csv_file="l.csv")
    assert [(r.pid, r.camid) for r in ds.train] == [(3, 0)]
    assert [str(w.message).rsplit(": ", 1)[1] for w in record] == [
        "the query split is empty",
        "the gallery split is empty",
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("x.jpg,3,0", r"line 2 has 3 fields; expected path,pid,camid,split"),
        ("x.jpg,three,0,train", r"line 2: pid 'three' and camid '0' must be non-negative integers"),
        ("x.jpg,3,-1,train", r"line 2: pid '3' and camid '-1' must be non-negative integers"),
        ("x.jpg,3,0,test", r"line 2: split 'test' must be one of train, query, gallery"),
    ],
)
def test_csv_errors_name_file_and_line(
    tmp_path: Path,
    write_image: Callable[..., str],
    write_text: Callable[..., str],
    line: str,
    message: str,
) -> None:
    write_image(str(tmp_path / "custom" / "x.jpg"))
    write_text(str(tmp_path / "custom" / "l.csv"), ["x.jpg,1,0,train", line])
    with pytest.raises(DatasetFormatError, match=r"l\.csv, " + message):
        CustomDataset(str(tmp_path), csv_file="l.csv")


def test_csv_missing_image_and_file(tmp_path: Path, write_text: Callable[..., str]) -> None:
    write_text(str(tmp_path / "custom" / "l.csv"), ["nothere.jpg,1,0,train"])
    with pytest.raises(
        DatasetNotFoundError,
        match=r"image not found: .*custom/nothere\.jpg \(listed at .*l\.csv, line 1\)",
    ):
        CustomDataset(str(tmp_path), csv_file="l.csv")
    with pytest.raises(
        DatasetNotFoundError,
        match=r"CSV file not found: .*custom/other\.csv \(DATASETS.CUSTOM.CSV\)",
    ):
        CustomDataset(str(tmp_path), csv_file="other.csv")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetNotFoundError, match=r"folder not found: .*/absent \(DATASETS.CUSTOM.DIR\)"
    ):
        CustomDataset(str(tmp_path), folder="absent")


def _csv_dataset(tmp_path: Path, write_image: Callable[..., str], text: bytes) -> CustomDataset:
    for n in ("a", "b", "q", "g"):
        write_image(str(tmp_path / "custom" / f"{n}.jpg"))
    (tmp_path / "custom" / "l.csv").write_bytes(text)
    return CustomDataset(str(tmp_path), csv_file="l.csv")


def test_csv_with_a_byte_order_mark_reads_like_plain_utf8(
    tmp_path: Path, write_image: Callable[..., str]
) -> None:
    # Excel's "CSV UTF-8" starts the file with a byte-order mark, before the header.
    text = "path,pid,camid,split\r\na.jpg,1,0,train\r\nb.jpg,1,1,train\r\nq.jpg,2,0,query\r\n"
    text += "g.jpg,2,1,gallery\r\n"
    ds = _csv_dataset(tmp_path, write_image, b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert [(os.path.basename(r.path), r.pid, r.camid) for r in ds.train] == [
        ("a.jpg", 1, 0),
        ("b.jpg", 1, 1),
    ]
    assert [os.path.basename(r.path) for r in ds.query + ds.gallery] == ["q.jpg", "g.jpg"]


def test_csv_in_latin1_is_an_error_naming_file_line_and_remedy(
    tmp_path: Path, write_image: Callable[..., str]
) -> None:
    text = "a.jpg,1,0,train\nb.jpg,1,1,train\ncaf\xe9.jpg,2,0,query\n".encode("latin-1")
    with pytest.raises(DatasetFormatError) as info:
        _csv_dataset(tmp_path, write_image, text)
    assert str(info.value) == (
        f"Custom: {tmp_path}/custom/l.csv, line 3: not UTF-8 (byte 0xe9 at offset 35; Latin-1 "
        f"or another legacy encoding?). Save the CSV as UTF-8 (in Excel: 'CSV UTF-8'), e.g. "
        f"iconv -f latin1 -t utf-8 l.csv"
    )


def test_csv_listing_a_query_image_in_the_gallery_is_an_error(
    tmp_path: Path, write_image: Callable[..., str]
) -> None:
    lines = ["a.jpg,1,0,train", "q.jpg,2,0,query", "g.jpg,2,1,gallery", "./q.jpg,2,0,gallery"]
    with pytest.raises(DatasetFormatError) as info:
        _csv_dataset(tmp_path, write_image, "\n".join(lines).encode())
    assert str(info.value) == (
        f"Custom: {tmp_path}/custom/l.csv, line 4 lists {tmp_path}/custom/q.jpg as gallery, and "
        f"line 2 as query: a query found in the gallery matches itself and inflates Rank-1 and "
        f"mAP. List each image in query or in gallery, not both"
    )
    # Gallery first, then the same image as a query: the same error.
    lines = ["a.jpg,1,0,train", "g.jpg,2,1,gallery", "q.jpg,2,0,gallery", "q.jpg,2,0,query"]
    with pytest.raises(DatasetFormatError, match="line 4 lists .*q.jpg as query, and line 3 as"):
        _csv_dataset(tmp_path, write_image, "\n".join(lines).encode())


def test_csv_listing_an_image_twice_in_one_split_is_an_error(
    tmp_path: Path, write_image: Callable[..., str]
) -> None:
    lines = ["a.jpg,1,0,train", "q.jpg,2,0,query", "g.jpg,2,1,gallery", "g.jpg,2,1,gallery"]
    with pytest.raises(
        DatasetFormatError, match=r"line 4 lists .*custom/g\.jpg in gallery again \(first at line 3"
    ):
        _csv_dataset(tmp_path, write_image, "\n".join(lines).encode())
