"""The papers' tables: their records, the runs behind each cell, the report beside the paper's
numbers.

Used by tools/reproduce.py; see README.md "Reproducing a table".
"""

from .plan import Run, TablePlan, plan_table
from .quick import QUICK_DATASET, QUICK_OPTS, quick_opts
from .record import TableRecord, TableRecordError, default_papers_dir, list_tables, load_table
from .report import TableResult, collect, failed_runs, to_markdown
from .runner import execute, missing_datasets, read_results, run_status

__all__ = [
    "QUICK_DATASET",
    "QUICK_OPTS",
    "Run",
    "TablePlan",
    "TableRecord",
    "TableRecordError",
    "TableResult",
    "collect",
    "default_papers_dir",
    "execute",
    "failed_runs",
    "list_tables",
    "load_table",
    "missing_datasets",
    "plan_table",
    "quick_opts",
    "read_results",
    "run_status",
    "to_markdown",
]
