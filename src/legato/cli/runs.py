"""``legato runs list`` and ``legato runs show``: look at stored runs."""

from __future__ import annotations

import dataclasses
import logging
from typing import Annotated, Any

import typer

from legato.cli.display import run_details, runs_table
from legato.cli.options import JsonOption, UrlOption, VerboseOption
from legato.cli.output import configure_logging, print_json, stdout, user_errors
from legato.client import Client

__all__ = ["app"]

app = typer.Typer(help="Look at stored runs.", no_args_is_help=True)


@app.command("list")
def list_runs(
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            "-s",
            metavar="STATUS",
            help="Only runs with this status: pending, running, paused, completed, failed "
            "or cancelled.",
        ),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", "-w", metavar="NAME", help="Only runs of this workflow."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, metavar="N", help="At most this many.")
    ] = 20,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """List runs, newest first."""
    configure_logging(logging.WARNING)
    with user_errors(), Client(url, migrate=False) as client:  # reading creates nothing
        runs = client.list_runs(status=status, workflow=workflow, limit=limit)
    if as_json:
        # Listed runs come without their steps: leave the empty field out.
        print_json([_without_steps(dataclasses.asdict(run)) for run in runs])
    elif runs:
        stdout().print(runs_table(runs))
    else:
        stdout().print("no runs", style="dim")


@app.command("show")
def show_run(
    run_id: Annotated[
        str,
        typer.Argument(
            metavar="RUN_ID",
            help="The run's id, or its first 8 or more characters.",
            show_default=False,
        ),
    ],
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
    url: UrlOption = None,
) -> None:
    """Show one run: params, outputs, error, and each step with its attempts."""
    configure_logging(logging.WARNING)
    with user_errors(), Client(url, migrate=False) as client:  # reading creates nothing
        run = client.get(client.resolve_run_id(run_id))
        unserved = client.unserved_steps(run)
    if as_json:
        document = dataclasses.asdict(run)
        document["unserved_steps"] = [step.step_id for step in unserved]
        print_json(document)
    else:
        stdout().print(run_details(run, verbose=verbose, unserved=unserved))


def _without_steps(document: dict[str, Any]) -> dict[str, Any]:
    document.pop("steps", None)
    return document
