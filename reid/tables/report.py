"""A table's numbers, the paper's and ours side by side with the difference, as markdown and JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .plan import TablePlan
from .runner import FAILED, RunOutcome, read_results

# What a cell without a number of ours shows.
NOT_RUN = "not run"  # the run has not produced results (yet), or its dataset was not requested
NO_NUMBER = (
    "—"  # no number: a paper value it does not print, or no config for the cell (another method)
)
MISSING = "no data"  # the dataset is missing
FAILED_MARK = "failed"
NO_METRIC = "no result"  # results.json lacks this test set or metric

LEGEND = (
    "Cells: paper | ours | Δ = ours - paper, in percentage points. "
    f"'{NO_NUMBER}': no number (for ours: no config, e.g. a row quoted from the paper); '{MISSING}': dataset not found; "
    f"'{NOT_RUN}': no results yet; '{FAILED_MARK}': the run raised (see its log.txt); "
    "* = intermediate results of an unfinished run (the epoch it was evaluated at is in results.json)."
)


@dataclass
class CellResult:
    paper: float | None
    ours: float | None
    delta: float | None
    final: bool  # ours comes from the run's last epoch
    mark: str  # why there is no number of ours ("" when there is one)
    run: str | None


@dataclass
class TableResult:
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
        return asdict(self)


def collect(
    plan: TablePlan,
    missing: Mapping[str, str] | None = None,
    failed: Mapping[str, str] | None = None,
) -> TableResult:
    """Every cell of ``plan``'s table: the paper's number, ours from the run's results.json, the difference.

    ``missing``: dataset key -> reason (from ``missing_datasets``); ``failed``: run name -> error.
    """
    missing = dict(missing or {})
    failed = dict(failed or {})
    record = plan.record
    results_by_run = {name: read_results(run.output_dir) for name, run in plan.runs.items()}
    cells: list[list[CellResult]] = []
    for i, row in enumerate(record.rows):
        line = []
        for j, col in enumerate(record.columns):
            ref = plan.cells[(i, j)]
            paper = row.paper[j]
            ours, final, mark = None, False, ""
            if col.dataset not in row.configs:
                mark = NO_NUMBER
            elif ref.run is None:
                mark = NOT_RUN
            elif col.dataset in missing and not plan.quick:
                mark = MISSING
            elif ref.run in failed:
                mark = FAILED_MARK
            else:
                results = results_by_run.get(ref.run)
                if results is None:
                    mark = NOT_RUN
                else:
                    value = results["results"].get(ref.test, {}).get(ref.metric)
                    if isinstance(value, (int, float)):
                        ours = float(value)
                        final = results.get("epoch") == plan.runs[ref.run].max_epoch
                    else:
                        mark = NO_METRIC
            delta = ours - paper if ours is not None and paper is not None else None
            line.append(
                CellResult(paper=paper, ours=ours, delta=delta, final=final, mark=mark, run=ref.run)
            )
        cells.append(line)
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


def _number(value: float | None, decimals: int, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def summarise(message: str) -> str:
    """The first line of an error message, without a dataset reader's layout help."""
    return message.split("; expected layout")[0].splitlines()[0] if message else ""


def to_markdown(result: TableResult) -> str:
    """The table as GitHub markdown: per column three cells, paper | ours | Δ."""
    d = result.decimals
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
            paper = _number(cell.paper, d) if cell.paper is not None else NO_NUMBER
            if cell.ours is not None:
                ours = _number(cell.ours, d) + ("" if cell.final else "*")
            else:
                ours = cell.mark
            cells += [paper, ours, _number(cell.delta, d, signed=True)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", LEGEND]
    if result.missing_datasets:
        lines += ["", "Missing datasets (their cells were not run):"]
        for key, reason in result.missing_datasets.items():
            text = summarise(reason)
            lines.append(
                f"- {key}: {text[len(key) + 2 :] if text.startswith(key + ': ') else text}"
            )
    if result.failed_runs:
        lines += ["", "Failed runs:"]
        lines += [
            f"- {name}: {summarise(error) or 'failed'}"
            for name, error in result.failed_runs.items()
        ]
    if result.notes:
        lines += ["", "Notes:"]
        lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def failed_runs(outcomes: Sequence[RunOutcome]) -> dict[str, str]:
    """Run name -> error, for the FAILED outcomes of ``execute``."""
    return {o.run.name: o.error for o in outcomes if o.status == FAILED}
