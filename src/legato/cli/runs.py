"""``legato runs list``, ``show`` and ``signal``: look at stored runs, and signal one.

The operations that steer runs (pause, resume, cancel, retry, rerun, restart,
skip) are in :mod:`legato.cli.operate`, on the same ``legato runs`` group.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Annotated, Any

import typer

from legato.cli.display import run_details, runs_table
from legato.cli.options import JsonOption, RunIdArgument, UrlOption, VerboseOption
from legato.cli.output import configure_logging, print_json, stdout, user_errors
from legato.client import Client
from legato.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(
    help="Look at stored runs; signal, pause, resume, cancel, retry, rerun, restart them.",
    no_args_is_help=True,
)


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
    run_id: RunIdArgument,
    every_item: Annotated[
        bool,
        typer.Option(
            "--all", "-a", help="List every item of a map and iteration of a loop, not a count."
        ),
    ] = False,
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
        document["handler_of"] = run.handler_of
        document["percent"] = run.percent
        for key, step in run.steps.items():  # what is computed from the stored reports
            document["steps"][key]["percent"] = step.percent
            document["steps"][key]["eta"] = step.eta
        print_json(document)
    else:
        stdout().print(run_details(run, verbose=verbose, unserved=unserved, every_item=every_item))


@app.command("signal")
def send_signal(
    run_id: RunIdArgument,
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="The signal's name.", show_default=False),
    ],
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            "-p",
            metavar="JSON",
            help="The signal's payload, as JSON: the waiting step's output (default: null).",
        ),
    ] = None,
    sent_by: Annotated[
        str | None,
        typer.Option("--by", metavar="WHO", help="Who sends it, recorded in the run's events."),
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """Send a run a signal: the step waiting for NAME completes with the payload.

    A signal sent before any step waits for it is kept for the first that does.
    """
    configure_logging(logging.WARNING)
    with user_errors():
        value = _payload(payload)
        with Client(url, migrate=False) as client:
            full_id = client.resolve_run_id(run_id)
            delivered = client.signal(full_id, name, value, sent_by=sent_by)
    step = None if delivered == "kept" else delivered
    if as_json:
        print_json({"run_id": full_id, "signal": name, "step": step})
    elif step is None:
        stdout().print(
            f"signal {name!r} kept for run {full_id}: no step waits for it yet", highlight=False
        )
    else:
        stdout().print(f"signal {name!r} completed step {step} of run {full_id}", highlight=False)


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--payload is not JSON: {exc}") from None


def _without_steps(document: dict[str, Any]) -> dict[str, Any]:
    document.pop("steps", None)
    return document
