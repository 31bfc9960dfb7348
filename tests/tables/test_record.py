"""Table records: the shipped ones hold the papers' numbers; broken records fail naming the file
and key."""

import os
import re
import textwrap

import pytest

from reid.tables import TableRecordError, list_tables, load_table
from reid.tables.record import default_papers_dir

PAPERS = default_papers_dir()

# Copied verbatim from ../shared/specs/papers.md (the numbers every reproduction is compared
# against).
PAPERS_MD = """
- Table 1 (mAP / Rank-1): Market-1501 | DukeMTMC-reID
  - Baseline (NSL):            81.65 / 92.31 | 71.10 / 83.44
  - + ratio loss:              82.14 / 92.43 | 71.25 / 84.16
  - + OHEM:                    82.44 / 92.73 | 71.61 / 84.16
  - + ratio loss + OHEM:       83.12 / 92.64 | 71.66 / 84.34
- Table 2 (mAP / Rank-1): CUHK03 labeled | detected (767/700 protocol)
  - Baseline:                  59.88 / 61.14 | 59.02 / 60.57
  - + ratio loss:              63.47 / 64.21 | 61.30 / 62.86
  - + OHEM:                    63.34 / 64.43 | 60.36 / 61.43
  - + ratio loss + OHEM:       66.26 / 68.57 | 63.24 / 65.07
- Table 2 (Rank-1 / mAP), CUHK03(L) | Market1501 | DukeMTMC | MSMT17:
  - Cls:                         67.2/63.6 | 94.1/83.5 | 85.6/73.8 | 72.7/46.8
  - Tri Euclid hard:             79.4/75.0 | 94.0/84.8 | 86.9/74.6 | 73.8/49.8
  - Tri Euclid all:              63.7/60.2 | 87.6/74.0 | 75.9/59.0 | 55.0/33.0
  - Tri cos hard:                63.3/57.5 | 83.1/65.3 | 81.6/66.4 | 33.2/25.6
  - Tri cos all:                 43.1/40.6 | 68.8/50.2 | 65.0/46.2 | 25.2/12.5
  - Tri+Cls Euclid hard:         79.6/75.8 | 94.9/86.6 | 87.3/76.7 | 78.8/56.0
  - Tri+Cls Euclid all:          74.3/70.6 | 95.0/86.9 | 87.3/77.1 | 77.6/53.9
  - Tri+Cls cos hard:            80.7/76.4 | 94.6/86.9 | 88.8/77.9 | 78.6/54.5
  - Tri+Cls cos all (Baseline):  81.8/78.2 | 94.7/87.3 | 88.7/78.3 | 79.8/56.2
- Table 3 (Rank-1 / mAP), same columns:
  - P2S Tri + Cls:               81.1/77.8 | 94.8/86.7 | 88.5/78.1 | 80.0/55.6
  - N-tuplet + Cls, N=2:         81.4/77.7 | 94.4/87.0 | 88.9/78.1 | 79.2/55.7
  - N=4:                         82.1/78.4 | 94.5/87.2 | 88.8/78.6 | 80.0/57.2
  - N=8:                         82.1/78.9 | 94.5/87.5 | 89.0/79.0 | 80.3/57.8
  - N=16:                        82.2/79.1 | 94.7/87.7 | 89.4/79.2 | 80.2/58.1
  - PN-tuplet + Cls, N=16:       82.9/79.6 | 94.8/87.5 | 89.7/78.8 | 80.9/58.2
  - MPN-tuplet + Cls, N=16:      84.4/80.3 | 95.3/88.7 | 89.5/79.7 | 82.2/60.1
  - MPN-tuplet + Tri + Cls:      84.6/80.8 | 96.0/88.7 | 89.9/80.0 | 82.7/60.5
- Table (as printed), MSMT17 mAP | Market-1501 mAP | DukeMTMC mAP | VeRi-776 mAP |
  VehicleID-small R1 | VehicleID-medium R1:
  - SP-H:  61.0 | 80.5 | 87.5 | 75.3 | 85.6 | 80.0
  - SP-LH: 58.4 | 77.0 | 83.8 | 77.2 | 87.0 | 81.9
  - AdaSP: 60.7 | 80.1 | 86.8 | 77.6 | 86.4 | 81.8
"""

# Table 3 of the ratio paper, as the seed prints it (001_1e58f741793c77cc.txt), one line per margin.
RATIO_TABLE3 = """
LMCL 0.01 82.49 92.70 71.87 84.29 63.12 63.71 61.42 63.36
LMCL 0.1 82.93 93.11 72.32 84.92 63.55 66.50 62.54 63.64
LMCL 0.3 82.05 92.49 71.43 83.93 63.32 64.64 60.71 62.00
LMCL 0.5 81.70 93.02 70.68 84.07 62.15 64.21 58.49 60.43
LMCL 1.0 81.15 92.25 70.51 84.11 61.86 63.50 58.46 59.79
ArcFace 0.01 82.31 92.99 71.19 84.02 63.02 64.21 60.92 63.00
ArcFace 0.1 82.70 92.96 71.28 83.93 64.33 66.50 62.54 64.93
ArcFace 0.3 82.52 92.99 71.09 84.78 65.20 67.57 62.65 63.43
ArcFace 0.5 81.28 92.34 70.54 83.89 64.62 65.86 61.83 63.07
ArcFace 1.0 80.86 91.42 69.60 83.08 62.76 64.14 60.72 61.50
Ours - 83.12 92.64 71.66 84.34 66.26 68.57 63.24 65.07
"""


def _papers_md_rows(header_start):
    """The rows under the papers.md bullet starting with ``header_start``: name -> numbers."""
    lines = PAPERS_MD.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"- {header_start}"))
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith("- "):
            break
        if line.startswith("  - "):
            name, values = line[4:].split(":", 1)
            rows[name.strip()] = [float(v) for v in re.findall(r"\d+\.\d+", values)]
    return rows


def _paper(table, row_name):
    record = load_table(table)
    (row,) = [r for r in record.rows if r.name == row_name]
    return list(row.paper)


RATIO_T1_ROWS = [
    "Baseline (NSL)",
    "Baseline + ratio loss",
    "Baseline + OHEM",
    "Baseline + ratio loss + OHEM (ours)",
]
UNIFIED_T2_ROWS = {
    "Cls": "Cls.",
    "Tri Euclid hard": "Tri. Euclidean, hard mining",
    "Tri Euclid all": "Tri. Euclidean, all triplets",
    "Tri cos hard": "Tri. cosine, hard mining",
    "Tri cos all": "Tri. cosine, all triplets",
    "Tri+Cls Euclid hard": "Tri. + Cls. Euclidean, hard mining",
    "Tri+Cls Euclid all": "Tri. + Cls. Euclidean, all triplets",
    "Tri+Cls cos hard": "Tri. + Cls. cosine, hard mining",
    "Tri+Cls cos all (Baseline)": "Tri. + Cls. cosine, all triplets (Baseline)",
}
UNIFIED_T3_ROWS = {
    "P2S Tri + Cls": "P2S Tri. + Cls.",
    "N-tuplet + Cls, N=2": "N-tuplet + Cls., N = 2",
    "N=4": "N-tuplet + Cls., N = 4",
    "N=8": "N-tuplet + Cls., N = 8",
    "N=16": "N-tuplet + Cls., N = 16",
    "PN-tuplet + Cls, N=16": "PN-tuplet + Cls., N = 16",
    "MPN-tuplet + Cls, N=16": "MPN-tuplet + Cls., N = 16",
    "MPN-tuplet + Tri + Cls": "MPN-tuplet + Tri. + Cls., N = 16",
}


def test_shipped_tables():
    assert list_tables() == [
        "adasp",
        "ratio_fig5_lambda",
        "ratio_fig6_eps",
        "ratio_table1",
        "ratio_table2",
        "ratio_table3",
        "survey",
        "unified_table2",
        "unified_table3",
        "unified_table4",
    ]


@pytest.mark.parametrize("name", list_tables())
def test_shipped_record_loads_with_existing_configs_and_layers(name):
    record = load_table(name)
    assert record.rows and record.columns
    for row in record.rows:
        assert len(row.paper) == len(record.columns)
        for path in row.configs.values():
            assert os.path.isfile(path) and path.startswith(PAPERS)
    for spec in record.datasets.values():
        assert os.path.isfile(spec.layer)


@pytest.mark.parametrize(
    "table,papers_md", [("ratio_table1", "Table 1 (mAP"), ("ratio_table2", "Table 2 (mAP")]
)
def test_ratio_tables_1_2_match_papers_md(table, papers_md):
    rows = list(_papers_md_rows(papers_md).values())
    assert [_paper(table, name) for name in RATIO_T1_ROWS] == rows


def test_ratio_table3_matches_the_seed():
    record = load_table("ratio_table3")
    lines = RATIO_TABLE3.split("\n")[1:-1]
    assert len(record.rows) == len(lines)
    for row, line in zip(record.rows, lines):
        method, margin, *values = line.split()
        assert list(row.paper) == [float(v) for v in values]
        assert row.name.startswith(method if method != "Ours" else "NSL + ratio loss + OHEM")
        if margin != "-":
            assert row.name.endswith(f"m = {margin}")
            assert os.path.basename(row.configs["Market1501"]) == f"{method.lower()}_m{margin}.yml"


def test_unified_tables_2_3_match_papers_md():
    for name, ours in UNIFIED_T2_ROWS.items():
        assert _paper("unified_table2", ours) == _papers_md_rows("Table 2 (Rank-1")[name], name
    for name, ours in UNIFIED_T3_ROWS.items():
        assert _paper("unified_table3", ours) == _papers_md_rows("Table 3 (Rank-1")[name], name
    # Table 3's Baseline row as the seed prints it: DukeMTMC Rank-1 88.9 (Tables 2 and 4: 88.7).
    assert _paper("unified_table3", "Baseline (Tri. + Cls.)") == [
        81.8,
        78.2,
        94.7,
        87.3,
        88.9,
        78.3,
        79.8,
        56.2,
    ]


def test_unified_table4_ours_and_runnable_rows():
    record = load_table("unified_table4")
    t2, t3 = load_table("unified_table2"), load_table("unified_table3")
    baseline = {r.name: r for r in record.rows}["Baseline (Tri. + Cls.)"]
    unicls = {r.name: r for r in record.rows}["UniCls (MPN-tuplet + Tri. + Cls.)"]
    assert list(baseline.paper) == _papers_md_rows("Table 2 (Rank-1")["Tri+Cls cos all (Baseline)"]
    assert list(unicls.paper) == _papers_md_rows("Table 3 (Rank-1")["MPN-tuplet + Tri + Cls"]
    t2_baseline = {r.name: r for r in t2.rows}["Tri. + Cls. cosine, all triplets (Baseline)"]
    assert baseline.configs == t2_baseline.configs and unicls.configs == t3.rows[-1].configs
    bot = {r.name: r for r in record.rows}["Bag of Tricks [27] (Tri. + Cls. + Center)"]
    assert list(bot.paper) == [None, None, 94.5, 85.9, 86.4, 76.4, None, None]
    assert sorted(bot.configs) == ["DukeMTMC", "Market1501"]
    assert {r.name for r in record.rows if r.runnable} == {baseline.name, unicls.name, bot.name}
    rga = {r.name: r for r in record.rows}["RGA-SC [58] (Tri. + Cls.)"]
    assert list(rga.paper) == [80.4, 76.5, 95.8, 88.1, 86.1, 74.9, 81.3, 56.3]


def test_adasp_table_matches_papers_md_and_uses_one_run_for_both_vehicleid_columns():
    record = load_table("adasp")
    rows = _papers_md_rows("Table (as printed)")
    for name, values in rows.items():
        assert _paper("adasp", name) == values
    assert [c.test for c in record.columns] == [
        "MSMT17",
        "Market1501",
        "DukeMTMC",
        "VeRi",
        "SmallVehicleID",
        "MediumVehicleID",
    ]
    for row in record.rows:
        kind = "CE" if row.name.startswith("CE") else "single"
        loss = row.name.split()[-1].lower()
        assert os.path.basename(row.configs["Market1501"]) == f"mgn_{kind}_{loss}.yml"
        assert os.path.basename(row.configs["VeRi"]) == f"norm_{kind}_{loss}.yml"
        if kind == "CE":
            assert row.paper == (None,) * 6


def test_sweep_records_point_at_the_method_for_the_default_values():
    lam = {r.name: r for r in load_table("ratio_fig5_lambda").rows}
    eps = {r.name: r for r in load_table("ratio_fig6_eps").rows}
    method = load_table("ratio_table1").rows[-1].configs["Market1501"]
    assert (
        lam["lambda = 1.0"].configs["Market1501"]
        == method
        == eps["eps = 0.5"].configs["Market1501"]
    )
    assert list(lam["lambda = 0.1"].paper) == [None, None, 63.82, None]
    assert list(lam["lambda = 1.5"].paper) == [None, None, 66.87, None]
    assert list(eps["eps = 0.5"].paper) == [83.12, 71.66, 66.26, 63.24]


# ---- validation of broken records -------------------------------------------------------------

GOOD = """
title: T
paper: P
source: S
datasets:
  Market1501: {layer: datasets/Market1501.yml}
columns:
  - {dataset: Market1501, metric: mAP}
rows:
  - name: A
    config: row.yml
    paper: [50.0]
"""


@pytest.fixture
def papers_dir(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "Market1501.yml").write_text(
        'DATASETS:\n  NAMES: ["Market1501"]\n  TESTS: ["Market1501"]\n'
    )
    (tmp_path / "row.yml").write_text("SOLVER:\n  MAX_EPOCH: 2\n")
    return tmp_path


def _write(papers_dir, text):
    (papers_dir / "tables" / "t.yaml").write_text(textwrap.dedent(text))
    return str(papers_dir)


def test_good_fixture_record_loads(papers_dir):
    record = load_table("t", _write(papers_dir, GOOD))
    assert record.columns[0].label == "Market1501 mAP" and record.decimals == 2
    assert record.rows[0].configs == {"Market1501": str(papers_dir / "row.yml")}


@pytest.mark.parametrize(
    "old,new,message",
    [
        (
            "metric: mAP",
            "metric: MAP",
            r"columns\[0\]\.metric: 'MAP' is not one of Rank-1, Rank-5, Rank-10, mAP, mINP",
        ),
        ("config: row.yml", "config: nope.yml", r"rows\[0\]\.config: file not found: .*nope\.yml"),
        ("paper: [50.0]", "paper: [50.0, 60.0]", r"rows\[0\]\.paper: expected a list of 1 values"),
        (
            "paper: [50.0]",
            "paper: [150.0]",
            r"rows\[0\]\.paper\[0\]: expected a percentage in \[0, 100\]",
        ),
        (
            "{dataset: Market1501, metric: mAP}",
            "{dataset: Duke, metric: mAP}",
            r"columns\[0\]\.dataset: 'Duke' is not in datasets",
        ),
        (
            "config: row.yml",
            "config: {Duke: row.yml}",
            r"rows\[0\]\.config: datasets \['Duke'\] have no column",
        ),
        (
            "layer: datasets/Market1501.yml",
            "layer: datasets/Market1501.yml, test: X",
            r"datasets\.Market1501\.test: 'X' is not one of",
        ),
        ("title: T", "title: T\ntitel: U", r"unknown key\(s\) \['titel'\]"),
        ("source: S", "source: S\nsource: S2", r"duplicate key 'source'"),
        ("    config: row.yml\n", "", r"rows\[0\]: missing key 'config'"),
    ],
)
def test_broken_record_names_file_and_key(papers_dir, old, new, message):
    assert old in GOOD
    papers = _write(papers_dir, GOOD.replace(old, new))
    with pytest.raises(TableRecordError, match=message) as info:
        load_table("t", papers)
    assert "t.yaml" in str(info.value)


def test_unknown_table_lists_the_known_ones(papers_dir):
    _write(papers_dir, GOOD)
    with pytest.raises(TableRecordError, match=r"no table record 'x' .* known tables: t"):
        load_table("x", str(papers_dir))
