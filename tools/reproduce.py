#!/usr/bin/env python
r"""Reproduce a table of the papers: run its cells and print our numbers beside the paper's.

    python tools/reproduce.py --list
    python tools/reproduce.py --table ratio_table1 --dry-run    # the runs and their commands
    python tools/reproduce.py --table ratio_table1              # train what is missing, report
    python tools/reproduce.py --table unified_table3 --datasets Market1501 \
        MODEL.DEVICE cuda:1
    python tools/reproduce.py --table all --quick               # every table, tiny synthetic runs

Finished runs (results.json at the last epoch) are skipped, unfinished ones resume from their last
checkpoint, missing datasets are reported and their cells left empty. The report is printed and
written to <output-dir>/<table>.md and <table>.json. Trailing KEY VALUE pairs override every run.
"""

import argparse
import logging
import os
import sys
from collections.abc import Sequence

# Run as a script from a checkout: import the reid next to tools/ (installed, this is reid.tools).
if not __package__:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reid.config import ConfigError  # noqa: E402
from reid.engine.launch import run_tool  # noqa: E402
from reid.tables import (  # noqa: E402
    TableRecordError,
    collect,
    execute,
    failed_runs,
    list_tables,
    load_table,
    missing_datasets,
    plan_table,
    run_status,
    to_markdown,
)
from reid.tables.plan import TablePlan  # noqa: E402
from reid.tables.report import summarise  # noqa: E402
from reid.utils.file_io import atomic_write_json, atomic_write_text  # noqa: E402
from reid.utils.logger import setup_logger  # noqa: E402

DEFAULT_OUTPUT = os.path.join("logs", "papers")
DEFAULT_QUICK_OUTPUT = os.path.join("logs", "papers-quick")


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the cells of a paper's table and compare with the paper's numbers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument(
        "--table", nargs="+", metavar="NAME", help="table record name(s) (see --list), or 'all'"
    )
    parser.add_argument("--list", action="store_true", help="list the table records and exit")
    parser.add_argument(
        "--datasets",
        nargs="+",
        metavar="KEY",
        help="only these dataset keys of the table (default: all)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs (status, command) and the table so far; train nothing",
    )
    parser.add_argument(
        "--quick", action="store_true", help="every cell as a tiny run on the synthetic dataset"
    )
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="with --quick: keep the runs' weights (deleted once a quick run is finished)",
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="runs and reports go here "
        f"(default {DEFAULT_OUTPUT}, {DEFAULT_QUICK_OUTPUT} with --quick)",
    )
    parser.add_argument(
        "--papers-dir",
        default=None,
        help="folder of the paper configs and tables/ (default configs/papers)",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides applied to every run"
    )
    return parser


def _describe_plan(plan: TablePlan, missing: dict) -> str:
    lines = [f"Table {plan.record.name}: {len(plan.runs)} run(s){' (quick)' if plan.quick else ''}"]
    for key, reason in missing.items():
        lines.append(f"  dataset {key} missing, its runs are skipped: {summarise(reason)}")
    for run in plan.runs.values():
        status = "skipped (dataset missing)" if run.dataset in missing else run_status(run)
        lines.append(f"  [{status}] {run.name}")
        lines.append(f"      {run.command(resume=status == 'partial')}")
    return "\n".join(lines)


def reproduce_table(name: str, args: argparse.Namespace, output_dir: str) -> bool:
    """Plan, (unless --dry-run) run and report one table; True when no run failed."""
    record = load_table(name, args.papers_dir)
    datasets = None
    if args.datasets:
        datasets = [d for d in args.datasets if d in record.column_datasets()]
        if not datasets:
            print(
                f"Table {name}: none of --datasets {args.datasets} is among its datasets "
                f"{record.column_datasets()}; skipped"
            )
            return True
    plan = plan_table(record, output_dir, datasets=datasets, quick=args.quick, opts=args.opts)
    missing = missing_datasets(plan, args.opts)
    print(_describe_plan(plan, missing), flush=True)
    failed = {}
    if not args.dry_run:
        keep = args.keep_checkpoints or not args.quick
        failed = failed_runs(
            execute(list(plan.runs.values()), skip_datasets=missing, keep_checkpoints=keep)
        )
    result = collect(plan, missing=missing, failed=failed)
    markdown = to_markdown(result)
    print("\n" + markdown, flush=True)
    atomic_write_text(os.path.join(output_dir, f"{name}.md"), markdown)
    atomic_write_json(os.path.join(output_dir, f"{name}.json"), result.to_json())
    return not failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser()
    args = parser.parse_args(argv)
    setup_logger()
    logging.getLogger("reid.tables").setLevel(logging.INFO)
    if args.list:
        for name in list_tables(args.papers_dir):
            print(f"{name}: {load_table(name, args.papers_dir).title}")
        return 0
    if not args.table:
        parser.error("--table NAME (or --list) is required")
    names: list[str] = list_tables(args.papers_dir) if args.table == ["all"] else list(args.table)
    if args.datasets:
        known = {d for n in names for d in load_table(n, args.papers_dir).column_datasets()}
        unknown = [d for d in args.datasets if d not in known]
        if unknown:
            parser.error(
                f"--datasets: {unknown} belong to none of the tables {names} "
                f"(their datasets: {sorted(known)})"
            )
    output_dir = os.path.abspath(
        args.output_dir or (DEFAULT_QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT)
    )
    ok = True
    for name in names:
        ok = reproduce_table(name, args, output_dir) and ok
    return 0 if ok else 1


def cli(argv: Sequence[str] | None = None) -> int:
    """The command line (``reid-reproduce``): ``main``, its errors as messages (status 2 for a
    table record or config error, 1 for others; ``--debug`` shows the traceback)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return run_tool(
        lambda: main(args), debug="--debug" in args, usage_errors=(TableRecordError, ConfigError)
    )


if __name__ == "__main__":
    sys.exit(cli())
