"""``legato runs search``, ``legato runs history`` and ``legato prune``: find runs, read
what happened to one, and delete old finished ones."""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated, Any

import typer

from legato.cli.display import history_table, runs_table
from legato.cli.options import JsonOption, UrlOption
from legato.cli.output import configure_logging, print_json, stderr, stdout, user_errors
from legato.client import Client
from legato.model.retention import PruneResult

__all__ = ["history", "prune", "search"]


def search(
    query: Annotated[
        str,
        typer.Argument(
            metavar="QUERY",
            help="Filters and text, e.g. "
            "'status:failed workflow:etl tag:env=prod since:2d \"timeout\"'. "
            "Filters: status:, workflow: (NAME or NAME@VERSION), version:, tag:KEY=VALUE, "
            "correlation:, by:, since: and until: (a duration back from now, or a date); "
            "anything else is text looked for in params, outputs and errors.",
            show_default=False,
        ),
    ] = "",
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=1000, metavar="N", help="Runs per page.")
    ] = 20,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor",
            metavar="CURSOR",
            help="Go on from where the page before ended (its next cursor).",
            show_default=False,
        ),
    ] = None,
    oldest: Annotated[bool, typer.Option("--oldest", help="Oldest first.")] = False,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Search runs, newest first, a page at a time."""
    configure_logging(logging.WARNING)
    order = "oldest" if oldest else "newest"
    with user_errors(), Client(url, migrate=False) as client:  # reading creates nothing
        page = client.search(query, limit=limit, cursor=cursor, order=order)
    if as_json:
        print_json(
            {
                "runs": [_without_steps(dataclasses.asdict(run)) for run in page.runs],
                "next_cursor": page.next_cursor,
            }
        )
        return
    if page.runs:
        stdout().print(runs_table(page.runs))
    else:
        stdout().print("no runs match" if query or cursor else "no runs", style="dim")
    if page.next_cursor is not None:
        again = ["legato", "runs", "search"] + ([repr(query)] if query else [])
        again += [f"--limit {limit}"] + (["--oldest"] if oldest else [])
        stderr().print(
            f"more: {' '.join(again)} --cursor {page.next_cursor}", style="dim", highlight=False
        )


def history(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID",
            help="The run's id, or its first 8 or more characters.",
            show_default=False,
        ),
    ],
    as_json: JsonOption = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every event's details in full.")
    ] = False,
    url: UrlOption = None,
) -> None:
    """Every event of a run, oldest first: when, what, which step, and who (a worker's id
    or a user's name)."""
    configure_logging(logging.WARNING)
    with user_errors(), Client(url, migrate=False) as client:
        full_id = client.resolve_run_id(run_id)
        events = client.history(full_id)
    if as_json:
        print_json([dataclasses.asdict(event) for event in events])
    else:
        stdout().print(history_table(events, full=verbose))


def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Runs that finished longer ago than this (30d, 12h, 1w).",
            show_default=False,
        ),
    ],
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            metavar="STATUS",
            help="Only runs that ended so: completed, failed or cancelled (repeatable; "
            "default: all three).",
            show_default=False,
        ),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", metavar="NAME", help="Only runs of this workflow."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, metavar="N", help="Run trees deleted per transaction, at most."
        ),
    ] = 500,
    as_json: JsonOption = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every run tree left, not the first few.")
    ] = False,
    url: UrlOption = None,
) -> None:
    """Delete finished runs older than a duration, with their child runs, steps, events
    and signals. Runs not finished are never touched."""
    configure_logging(logging.WARNING)
    with user_errors(), Client(url, migrate=False) as client:
        result = client.prune(
            older_than,
            status=status,
            workflow=workflow,
            dry_run=dry_run,
            batch_size=batch_size,
        )
    if as_json:
        print_json(dataclasses.asdict(result))
    else:
        stdout().print(_pruned(result), highlight=False)
        if result.skipped:
            listed = ", ".join(result.skipped if verbose else result.skipped[:5])
            more = "" if verbose or len(result.skipped) <= 5 else ", ..."
            stderr().print(
                f"left {_count(len(result.skipped), 'run tree')} with a run still going: "
                f"{listed}{more}",
                style="yellow",
                highlight=False,
            )


def _pruned(result: PruneResult) -> str:
    what = _count(result.runs, "run")
    if result.child_runs:
        what += f" and {_count(result.child_runs, 'child run')}"
    if result.dry_run:
        return f"would prune {what} (dry run: nothing deleted)"
    if not result.total:
        return "nothing to prune"
    return f"pruned {what} in {_count(result.batches, 'transaction')}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _without_steps(document: dict[str, Any]) -> dict[str, Any]:
    document.pop("steps", None)
    return document
