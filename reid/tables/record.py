"""Machine-readable records of the papers' tables: what each cell reports and which config gives it.

A record is a YAML file in ``configs/papers/tables/<name>.yaml``:

    title: "Table 1: ..."                    # as the paper captions it
    paper: "Yang et al., ..., 2020"
    source: "seed 001, Table 1"
    decimals: 2                              # digits the paper prints (our numbers use the same)
    notes: ["...", ...]                      # optional, printed under the table
    datasets:                                # the column groups: a dataset layer each
      Market1501:
        layer: datasets/Market1501.yml       # merged after the row config (path relative to
                                             # configs/papers)
        test: Market1501                     # optional: the results key (default: the layer's
                                             # first test set)
    columns:
      - {dataset: Market1501, metric: mAP}   # optional: test (another test set of the run), label
    rows:
      - name: Baseline (NSL)
        config: ratio/nsl.yml                # one config for every dataset, or {dataset: config,
                                             # ...} (datasets left out are not run), or null for a
                                             # row that is only quoted from the paper
        paper: [81.65, 92.31, ...]           # one value per column, null where the paper has none
        note: "..."                          # optional

Paths are relative to the papers folder (``configs/papers``). ``load_table`` checks everything a run
needs (files exist, every dataset of a runnable row has a config, one paper value per column) and
names the file and key of any problem.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from reid.config.files import configs_dir

# The metrics a ReID evaluation reports (results.json), which a column may show.
METRICS: tuple[str, ...] = ("Rank-1", "Rank-5", "Rank-10", "mAP", "mINP")

RECORD_KEYS = ("title", "paper", "source", "decimals", "notes", "datasets", "columns", "rows")
DATASET_KEYS = ("layer", "test")
COLUMN_KEYS = ("dataset", "metric", "test", "label")
ROW_KEYS = ("name", "config", "paper", "note")


class TableRecordError(ValueError):
    """A table record that cannot be used: missing key, unknown value, file not found."""


def default_papers_dir() -> str:
    """``papers/`` of the shipped configs (the checkout's ``configs/papers``, or the wheel's)."""
    return os.path.join(configs_dir(), "papers")


def tables_dir(papers_dir: str | None = None) -> str:
    """The folder of the table records: ``<papers_dir>/tables``."""
    return os.path.join(papers_dir or default_papers_dir(), "tables")


@dataclass(frozen=True)
class DatasetSpec:
    """A column group: the dataset layer merged after the row config, and its test set."""

    key: str
    layer: str  # absolute path of the dataset layer file
    test: str  # the results.json key of its default test set


@dataclass(frozen=True)
class Column:
    """A column: a metric of a test set of one dataset's runs, and its header label."""

    dataset: str
    metric: str
    test: str
    label: str


@dataclass(frozen=True)
class Row:
    """A method: its config per dataset, the paper's numbers (one per column) and a note."""

    name: str
    # dataset key -> absolute config path; datasets without one (all, for a row quoted from the
    # paper) are not run
    configs: dict[str, str]
    paper: tuple[float | None, ...]
    note: str = ""

    @property
    def runnable(self) -> bool:
        """Whether any dataset has a config (else the row is only quoted from the paper)."""
        return bool(self.configs)


@dataclass(frozen=True)
class TableRecord:
    """A validated table record (see the module docstring); paths are absolute."""

    name: str
    path: str
    title: str
    paper: str
    source: str
    decimals: int
    datasets: dict[str, DatasetSpec]
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    papers_dir: str = ""

    def relpath(self, path: str) -> str:
        """``path`` relative to the papers folder (how records and run names spell configs)."""
        return os.path.relpath(path, self.papers_dir)

    def column_datasets(self) -> list[str]:
        """Dataset keys in column order, each once."""
        return list(dict.fromkeys(c.dataset for c in self.columns))


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that rejects a key written twice in a mapping (PyYAML silently keeps the last)."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (the first value would be silently lost)",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_strict(path: str) -> Any:
    """YAML from ``path`` (safe types only), with duplicate keys an error."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_UniqueKeyLoader)


def _check_keys(where: str, given: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = [k for k in given if k not in allowed]
    if unknown:
        raise TableRecordError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}")


def _require(where: str, mapping: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in mapping:
        raise TableRecordError(f"{where}: missing key '{key}'")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise TableRecordError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _existing_file(where: str, papers_dir: str, rel: Any) -> str:
    if not isinstance(rel, str) or not rel:
        raise TableRecordError(f"{where}: expected a path relative to {papers_dir}, got {rel!r}")
    path = os.path.normpath(os.path.join(papers_dir, rel))
    if not os.path.isfile(path):
        raise TableRecordError(f"{where}: file not found: {path}")
    return path


def _layer_tests(where: str, layer: str) -> list[str]:
    data = load_yaml_strict(layer) or {}
    tests = data.get("DATASETS", {}).get("TESTS") if isinstance(data, Mapping) else None
    if not isinstance(tests, list) or not tests:
        raise TableRecordError(
            f"{where}: the layer {layer} must set DATASETS.TESTS (a non-empty list)"
        )
    return [str(t) for t in tests]


def _parse_datasets(where: str, raw: Any, papers_dir: str) -> dict[str, DatasetSpec]:
    if not isinstance(raw, Mapping) or not raw:
        raise TableRecordError(
            f"{where}: expected a mapping of dataset keys to {{layer, test}}, got {raw!r}"
        )
    specs = {}
    for key, spec in raw.items():
        at = f"{where}.{key}"
        if not isinstance(spec, Mapping):
            raise TableRecordError(
                f"{at}: expected a mapping with keys {', '.join(DATASET_KEYS)}, got {spec!r}"
            )
        _check_keys(at, spec, DATASET_KEYS)
        layer = _existing_file(f"{at}.layer", papers_dir, spec.get("layer"))
        tests = _layer_tests(f"{at}.layer", layer)
        test = spec.get("test", tests[0])
        if test not in tests:
            raise TableRecordError(
                f"{at}.test: {test!r} is not one of the layer's DATASETS.TESTS {tests}"
            )
        specs[str(key)] = DatasetSpec(key=str(key), layer=layer, test=str(test))
    return specs


def _parse_columns(where: str, raw: Any, datasets: Mapping[str, DatasetSpec]) -> tuple[Column, ...]:
    if not isinstance(raw, list) or not raw:
        raise TableRecordError(
            f"{where}: expected a non-empty list of {{dataset, metric}}, got {raw!r}"
        )
    columns = []
    for i, col in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(col, Mapping):
            raise TableRecordError(
                f"{at}: expected a mapping with keys {', '.join(COLUMN_KEYS)}, got {col!r}"
            )
        _check_keys(at, col, COLUMN_KEYS)
        dataset = _require(at, col, "dataset", str)
        if dataset not in datasets:
            raise TableRecordError(
                f"{at}.dataset: {dataset!r} is not in datasets ({', '.join(datasets)})"
            )
        metric = _require(at, col, "metric", str)
        if metric not in METRICS:
            raise TableRecordError(f"{at}.metric: {metric!r} is not one of {', '.join(METRICS)}")
        spec = datasets[dataset]
        test = col.get("test", spec.test)
        tests = _layer_tests(f"{at}.test", spec.layer)
        if test not in tests:
            raise TableRecordError(
                f"{at}.test: {test!r} is not one of {spec.layer}'s DATASETS.TESTS {tests}"
            )
        label = col.get("label", f"{test if test != spec.test else dataset} {metric}")
        columns.append(Column(dataset=dataset, metric=metric, test=str(test), label=str(label)))
    unused = set(datasets) - {c.dataset for c in columns}
    if unused:
        raise TableRecordError(f"{where}: datasets {sorted(unused)} have no column")
    return tuple(columns)


def _parse_paper_values(at: str, raw: Any, count: int) -> tuple[float | None, ...]:
    if not isinstance(raw, list) or len(raw) != count:
        raise TableRecordError(
            f"{at}: expected a list of {count} values (one per column, null where none), "
            f"got {raw!r}"
        )
    values: list[float | None] = []
    for j, v in enumerate(raw):
        if v is None:
            values.append(None)
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 100.0:
            values.append(float(v))
        else:
            raise TableRecordError(
                f"{at}[{j}]: expected a percentage in [0, 100] or null, got {v!r}"
            )
    return tuple(values)


def _parse_row(at: str, raw: Any, columns: Sequence[Column], papers_dir: str) -> Row:
    if not isinstance(raw, Mapping):
        raise TableRecordError(
            f"{at}: expected a mapping with keys {', '.join(ROW_KEYS)}, got {raw!r}"
        )
    _check_keys(at, raw, ROW_KEYS)
    name = _require(at, raw, "name", str)
    if "config" not in raw:
        raise TableRecordError(
            f"{at}: missing key 'config' (a path, a mapping dataset -> path, or null)"
        )
    config = raw["config"]
    needed = list(dict.fromkeys(c.dataset for c in columns))
    configs: dict[str, str] = {}
    if isinstance(config, str):
        path = _existing_file(f"{at}.config", papers_dir, config)
        configs = {d: path for d in needed}
    elif isinstance(config, Mapping):
        extra = set(config) - set(needed)
        if extra:
            raise TableRecordError(f"{at}.config: datasets {sorted(extra)} have no column")
        if not config:
            raise TableRecordError(
                f"{at}.config: an empty mapping; use null for a row that is only quoted"
            )
        configs = {
            d: _existing_file(f"{at}.config.{d}", papers_dir, config[d])
            for d in needed
            if d in config
        }
    elif config is not None:
        raise TableRecordError(
            f"{at}.config: expected a path, a mapping dataset -> path, or null, got {config!r}"
        )
    paper = _parse_paper_values(f"{at}.paper", raw.get("paper"), len(columns))
    return Row(name=name, configs=configs, paper=paper, note=str(raw.get("note", "")))


def load_table(name_or_path: str, papers_dir: str | None = None) -> TableRecord:
    """The record ``name_or_path``, validated.

    Args:
        name_or_path: A file stem in the tables folder ("ratio_table1"), or a path.
        papers_dir: The papers folder the record's paths are relative to (default:
            ``configs/papers`` of the checkout).

    Raises:
        TableRecordError: The record is missing or invalid; the message names the file and key.
    """
    papers_dir = os.path.abspath(papers_dir or default_papers_dir())
    path = _record_path(name_or_path, papers_dir)
    data = _read_record(path)
    datasets = _parse_datasets(f"{path}: datasets", data.get("datasets"), papers_dir)
    columns = _parse_columns(f"{path}: columns", data.get("columns"), datasets)
    return TableRecord(
        name=os.path.splitext(os.path.basename(path))[0],
        path=path,
        title=_require(path, data, "title", str),
        paper=_require(path, data, "paper", str),
        source=_require(path, data, "source", str),
        decimals=_parse_decimals(path, data.get("decimals", 2)),
        datasets=datasets,
        columns=columns,
        rows=_parse_rows(path, data.get("rows"), columns, papers_dir),
        notes=_parse_notes(path, data.get("notes", [])),
        papers_dir=papers_dir,
    )


def _record_path(name_or_path: str, papers_dir: str) -> str:
    if os.path.isfile(name_or_path):
        return os.path.abspath(name_or_path)
    path = os.path.join(tables_dir(papers_dir), f"{name_or_path}.yaml")
    if not os.path.isfile(path):
        known = ", ".join(list_tables(papers_dir)) or "none"
        raise TableRecordError(
            f"no table record '{name_or_path}' in {tables_dir(papers_dir)}; known tables: {known}"
        )
    return path


def _read_record(path: str) -> Mapping[str, Any]:
    """The record file's mapping, with only the known keys."""
    try:
        data = load_yaml_strict(path)
    except yaml.YAMLError as e:
        raise TableRecordError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, Mapping):
        raise TableRecordError(
            f"{path}: a table record must be a mapping, got {type(data).__name__}"
        )
    _check_keys(path, data, RECORD_KEYS)
    return data


def _parse_rows(
    path: str, raw_rows: Any, columns: Sequence[Column], papers_dir: str
) -> tuple[Row, ...]:
    if not isinstance(raw_rows, list) or not raw_rows:
        raise TableRecordError(f"{path}: rows: expected a non-empty list, got {raw_rows!r}")
    rows = tuple(
        _parse_row(f"{path}: rows[{i}]", r, columns, papers_dir) for i, r in enumerate(raw_rows)
    )
    names = [r.name for r in rows]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TableRecordError(f"{path}: rows: names {duplicates} appear more than once")
    return rows


def _parse_decimals(path: str, decimals: Any) -> int:
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 4:
        raise TableRecordError(f"{path}: decimals: expected a whole number 0..4, got {decimals!r}")
    return decimals


def _parse_notes(path: str, notes: Any) -> tuple[str, ...]:
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise TableRecordError(f"{path}: notes: expected a list of strings, got {notes!r}")
    return tuple(notes)


def list_tables(papers_dir: str | None = None) -> list[str]:
    """Names of the table records, sorted."""
    folder = tables_dir(papers_dir)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if n.endswith(".yaml"))
