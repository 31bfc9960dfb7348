"""A table's report: the paper's numbers and ours side by side, with the difference.

As markdown (:func:`to_markdown`) and as JSON (:meth:`TableResult.to_json`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .plan import CellRef, TablePlan
from .record import Column, Row
from .runner import FAILED, RunOutcome, read_results

__all__ = ["CellResult", "TableResult", "collect", "failed_runs", "summarise", "to_markdown"]

# What a cell without a number of ours shows.
NOT_RUN = "not run"  # the run has not produced results (yet), or its dataset was not requested
NO_NUMBER = "—"  # no number: a value the paper does not print, or no config (another method)
MISSING = "no data"  # the dataset is missing
FAILED_MARK = "failed"
NO_METRIC = "no result"  # results.json lacks this test set or metric

LEGEND = (
    "Cells: paper | ours | Δ = ours - paper, in percentage points. "
    f"'{NO_NUMBER}': no number (for ours: no config, e.g. a row quoted from the paper); "
    f"'{MISSING}': dataset not found; '{NOT_RUN}': no results yet; "
    f"'{FAILED_MARK}': the run raised (see its log.txt); "
    "* = intermediate results of an unfinished run (the epoch it was evaluated at is in "
    "results.json)."
)


@dataclass
class CellResult:
    """One cell: the paper's number, ours and the difference.

    Args:
        paper: The paper's number (None where it prints none).
        ours: Our number, from the run's results.json (None: see ``mark``).
        delta: ours - paper, when both are there.
        final: ``ours`` comes from the run's last epoch.
        mark: Why there is no number of ours ("" when there is one).
        run: The run behind the cell.
        draws: How many random gallery draws ``ours`` is the mean of (results.json's
            ``gallery_draws``; 1 for a fixed gallery).
    """

    paper: float | None
    ours: float | None
    delta: float | None
    final: bool
    mark: str
    run: str | None
    draws: int = 1


@dataclass
class TableResult:
    """A whole table: its record's texts, a :class:`CellResult` per cell, what went missing."""

    name: str
    title: str
    paper: str
    source: str
    quick: bool
    decimals: int
    columns: list[str]
    rows: list[str]
    cells: list[list[CellResult]]
    notes: list[str]
    missing_datasets: dict[str, str]
    failed_runs: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The table as JSON-ready nested dicts and lists."""
        return asdict(self)


def collect(
    plan: TablePlan,
    missing: Mapping[str, str] | None = None,
    failed: Mapping[str, str] | None = None,
) -> TableResult:
    """Every cell of ``plan``'s table: the paper's number, ours from the run's results.json and
    the difference.

    Args:
        plan: The table's runs.
        missing: Dataset key -> why it cannot be read (from ``missing_datasets``).
        failed: Run name -> its error (from ``failed_runs``).
    """
    missing = dict(missing or {})
    failed = dict(failed or {})
    record = plan.record
    results = {name: read_results(run.output_dir) for name, run in plan.runs.items()}
    cells = [
        [
            _cell(plan, row, col, plan.cells[(i, j)], row.paper[j], results, missing, failed)
            for j, col in enumerate(record.columns)
        ]
        for i, row in enumerate(record.rows)
    ]
    return TableResult(
        name=record.name,
        title=record.title,
        paper=record.paper,
        source=record.source,
        quick=plan.quick,
        decimals=record.decimals,
        columns=[c.label for c in record.columns],
        rows=[r.name for r in record.rows],
        cells=cells,
        notes=list(record.notes),
        missing_datasets=missing,
        failed_runs=failed,
    )


def _cell(
    plan: TablePlan,
    row: Row,
    col: Column,
    ref: CellRef,
    paper: float | None,
    results: Mapping[str, dict[str, Any] | None],
    missing: Mapping[str, str],
    failed: Mapping[str, str],
) -> CellResult:
    """One cell: ours if the run has it, else the mark that says why not."""
    ours, final, draws = None, False, 1
    mark = _not_run_mark(plan, row, col, ref, missing, failed)
    if not mark and ref.run is not None:
        run_results = results.get(ref.run)
        ours, final, mark = _our_number(run_results, ref, plan.runs[ref.run].max_epoch)
        if ours is not None and run_results is not None:
            draws = int(run_results.get("gallery_draws", {}).get(ref.test, 1))
    delta = ours - paper if ours is not None and paper is not None else None
    return CellResult(
        paper=paper, ours=ours, delta=delta, final=final, mark=mark, run=ref.run, draws=draws
    )


def _not_run_mark(
    plan: TablePlan,
    row: Row,
    col: Column,
    ref: CellRef,
    missing: Mapping[str, str],
    failed: Mapping[str, str],
) -> str:
    """Why the cell's run gives no number before its results are read ("" if it may give one)."""
    if col.dataset not in row.configs:
        return NO_NUMBER
    if ref.run is None:
        return NOT_RUN
    if col.dataset in missing and not plan.quick:
        return MISSING
    if ref.run in failed:
        return FAILED_MARK
    return ""


def _our_number(
    results: dict[str, Any] | None, ref: CellRef, max_epoch: int
) -> tuple[float | None, bool, str]:
    """(our number, whether it is final, the mark when there is none) from a run's results."""
    if results is None:
        return None, False, NOT_RUN
    value = results["results"].get(ref.test, {}).get(ref.metric)
    if not isinstance(value, (int, float)):
        return None, False, NO_METRIC
    return float(value), results.get("epoch") == max_epoch, ""


def _number(value: float | None, decimals: int, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def summarise(message: str) -> str:
    """The first line of an error message, without a dataset reader's layout help.

    >>> summarise("Market1501: folder not found: /data; expected layout: ...")
    'Market1501: folder not found: /data'
    """
    return message.split("; expected layout")[0].splitlines()[0] if message else ""


def to_markdown(result: TableResult) -> str:
    """The table as GitHub markdown: per column three cells, paper | ours | Δ; then the legend,
    the missing datasets, the failed runs and the record's notes."""
    lines = [f"## {result.title}", "", f"{result.paper}. Source: {result.source}.", ""]
    if result.quick:
        lines += [
            "**Quick run**: every cell trained for a few iterations on the tiny synthetic dataset; "
            "the numbers check the pipeline and are not comparable with the paper's.",
            "",
        ]
    header = ["Method"]
    for label in result.columns:
        header += [f"{label} paper", "ours", "Δ"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" + "---:|" * (len(header) - 1))
    for name, row in zip(result.rows, result.cells):
        cells = [name]
        for cell in row:
            cells += _markdown_cells(cell, result.decimals)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", LEGEND] + _markdown_footer(result)) + "\n"


def _markdown_cells(cell: CellResult, decimals: int) -> list[str]:
    """paper, ours (* when not final, the mark when there is none) and Δ."""
    paper = _number(cell.paper, decimals) if cell.paper is not None else NO_NUMBER
    if cell.ours is not None:
        ours = _number(cell.ours, decimals) + ("" if cell.final else "*")
    else:
        ours = cell.mark
    return [paper, ours, _number(cell.delta, decimals, signed=True)]


def _markdown_footer(result: TableResult) -> list[str]:
    """The columns whose numbers of ours are means of gallery draws, the missing datasets, the
    failed runs and the notes, each as a list under a title."""
    lines: list[str] = []
    averaged: dict[str, set[int]] = {}
    for row in result.cells:
        for label, cell in zip(result.columns, row):
            if cell.draws > 1:
                averaged.setdefault(label, set()).add(cell.draws)
    if averaged:
        lines += ["", "Gallery draws (ours):"]
        lines += [
            f"- {label}: the mean of {' / '.join(str(n) for n in sorted(counts))} draws"
            for label, counts in averaged.items()
        ]
    if result.missing_datasets:
        lines += ["", "Missing datasets (their cells were not run):"]
        for key, reason in result.missing_datasets.items():
            text = summarise(reason)
            lines.append(f"- {key}: {text.removeprefix(key + ': ')}")
    if result.failed_runs:
        lines += ["", "Failed runs:"]
        lines += [
            f"- {name}: {summarise(error) or 'failed'}"
            for name, error in result.failed_runs.items()
        ]
    if result.notes:
        lines += ["", "Notes:"]
        lines += [f"- {note}" for note in result.notes]
    return lines


def failed_runs(outcomes: Sequence[RunOutcome]) -> dict[str, str]:
    """Run name -> error, for the FAILED outcomes of ``execute``."""
    return {o.run.name: o.error for o in outcomes if o.status == FAILED}
