"""Turning a table record into runs: one training run per (config, dataset) that its cells need.

A run is the row's config, then its dataset layer (or, with ``quick``, the quick setting), then the
user's overrides, with OUTPUT_DIR = ``<output root>/<config path without .yml>/<dataset>``. Runs are
named after the config and the dataset only, so cells that share them (the same config in several
tables, the same quick run for every dataset of a row) train once.
"""

from __future__ import annotations

import json
import os
import shlex
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yacs.config import CfgNode

from reid.config import load_config
from reid.config.config import flatten_keys, parse_literal

from .quick import QUICK_DATASET, quick_opts
from .record import TableRecord, load_yaml_strict

__all__ = ["CellRef", "Run", "TablePlan", "format_opt_value", "layer_opts", "plan_table"]


@dataclass(frozen=True)
class Run:
    """One training run: ``config`` with ``opts`` applied in order, into ``output_dir``.

    Args:
        name: ``<config path without .yml>/<dataset>``, unique in a plan.
        config: The config file.
        dataset: The record's dataset key, or the quick dataset.
        opts: (KEY, value) overrides, in the order they apply.
        output_dir: The run's OUTPUT_DIR.
        max_epoch: Its SOLVER.MAX_EPOCH: the run is finished when its results reach it.
    """

    name: str
    config: str
    dataset: str
    opts: tuple[tuple[str, Any], ...]
    output_dir: str
    max_epoch: int

    def opts_list(self) -> list[str]:
        """``opts`` as the KEY VALUE strings ``load_config`` and tools/train_net.py take."""
        return _texts(self.opts)

    def command(self, resume: bool = False) -> str:
        """The equivalent tools/train_net.py command line."""
        config = os.path.relpath(self.config)
        parts = [
            "python",
            "tools/train_net.py",
            "--config-file",
            self.config if config.startswith("..") else config,
        ]
        if resume:
            parts.append("--resume")
        return " ".join(shlex.quote(p) for p in parts + self.opts_list())

    def load(self) -> CfgNode:
        """The run's config, loaded and checked."""
        return load_config(self.config, self.opts_list())


@dataclass(frozen=True)
class CellRef:
    """Where a cell's number comes from: a run, its test set and a metric."""

    run: str | None  # Run.name; None for a cell without a config or of a dataset not requested
    test: str
    metric: str


@dataclass
class TablePlan:
    """The runs of a table record and where each cell's number comes from.

    Args:
        record: The table.
        quick: Whether the runs are the quick setting's.
        runs: Run name -> run, in the order they are trained.
        cells: (row, column) -> the cell's source.
        datasets: The dataset keys requested, in column order.
    """

    record: TableRecord
    quick: bool
    runs: OrderedDict[str, Run] = field(default_factory=OrderedDict)
    cells: dict[tuple[int, int], CellRef] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)


def _literal_text(value: Any) -> str:
    """A Python literal for ``value``, strings double-quoted (reads better in a shell command)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{"
            + ", ".join(f"{_literal_text(str(k))}: {_literal_text(v)}" for k, v in value.items())
            + "}"
        )
    return repr(value)


def format_opt_value(value: Any) -> str:
    """A value as a command-line override text that ``load_config`` parses back to ``value``.

    >>> format_opt_value("Market1501"), format_opt_value([32, 16]), format_opt_value("1e-5")
    ('Market1501', '[32, 16]', '"1e-5"')
    """
    if isinstance(value, str) and parse_literal(value) is value:
        return value
    return _literal_text(value)


def layer_opts(path: str) -> list[tuple[str, Any]]:
    """A dataset layer file as (KEY, value) overrides."""
    data = load_yaml_strict(path) or {}
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{path}: a dataset layer must be a mapping of config keys, got {type(data).__name__}"
        )
    return flatten_keys(data)


def _pairs(opts: Sequence[str]) -> list[tuple[str, Any]]:
    """Command-line KEY VALUE strings as (key, value), values parsed as load_config parses them."""
    if len(opts) % 2:
        raise ValueError(
            f"overrides must be KEY VALUE pairs, got an odd number of items: {list(opts)}"
        )
    return [(k, parse_literal(v)) for k, v in zip(opts[0::2], opts[1::2])]


def _texts(pairs: Sequence[tuple[str, Any]]) -> list[str]:
    return [text for key, value in pairs for text in (key, format_opt_value(value))]


def run_name(record: TableRecord, config: str, dataset: str) -> str:
    """``<config path relative to the papers folder, without .yml>/<dataset>``."""
    return f"{os.path.splitext(record.relpath(config))[0]}/{dataset}"


def plan_table(
    record: TableRecord,
    output_root: str,
    datasets: Sequence[str] | None = None,
    quick: bool = False,
    opts: Sequence[str] = (),
) -> TablePlan:
    """The runs of ``record`` for the requested datasets, each config loaded once.

    Args:
        record: The table.
        output_root: The runs' OUTPUT_DIRs go under it.
        datasets: Dataset keys of the record (default: all).
        quick: The quick setting (see ``quick.py``) instead of the datasets.
        opts: KEY VALUE strings, applied last in every run: they override the config, the
            dataset layer and the quick setting.

    Raises:
        ValueError: An unknown dataset key.
        ConfigError: A config that does not load.
    """
    known = record.column_datasets()
    requested = list(datasets) if datasets else known
    unknown = [d for d in requested if d not in known]
    if unknown:
        raise ValueError(
            f"table {record.name}: unknown dataset(s) {unknown}; its datasets are {known}"
        )
    user = _pairs(list(opts))
    plan = TablePlan(record=record, quick=quick, datasets=[d for d in known if d in requested])
    for i, row in enumerate(record.rows):
        for j, col in enumerate(record.columns):
            if col.dataset not in row.configs or col.dataset not in requested:
                plan.cells[(i, j)] = CellRef(run=None, test=col.test, metric=col.metric)
                continue
            config = row.configs[col.dataset]
            dataset = QUICK_DATASET if quick else col.dataset
            name = run_name(record, config, dataset)
            if name not in plan.runs:
                plan.runs[name] = _make_run(
                    record, name, config, col.dataset, quick, user, output_root
                )
            test = QUICK_DATASET if quick else col.test
            plan.cells[(i, j)] = CellRef(run=name, test=test, metric=col.metric)
    return plan


def _make_run(
    record: TableRecord,
    name: str,
    config: str,
    dataset: str,
    quick: bool,
    user: list[tuple[str, Any]],
    output_root: str,
) -> Run:
    output = [("OUTPUT_DIR", os.path.join(output_root, *name.split("/")))]
    layer = [] if quick else layer_opts(record.datasets[dataset].layer)
    extra: list[tuple[str, Any]] = []
    if quick:
        base = load_config(config, _texts(user))
        extra = list(quick_opts(base).items())
    ordered = layer + extra + user + output
    cfg = load_config(config, _texts(ordered))
    return Run(
        name=name,
        config=config,
        dataset=QUICK_DATASET if quick else dataset,
        opts=tuple(ordered),
        output_dir=cfg.OUTPUT_DIR,
        max_epoch=cfg.SOLVER.MAX_EPOCH,
    )
