"""``legato workers list``: the live workers, what they serve and what they are running."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import typer
from rich.table import Table

from legato.cli.options import JsonOption, UrlOption
from legato.cli.output import configure_logging, print_json, stdout, user_errors
from legato.client import Client

__all__ = ["app"]

app = typer.Typer(help="Look at the workers serving the database.", no_args_is_help=True)


@app.command("list")
def list_workers(as_json: JsonOption = False, url: UrlOption = None) -> None:
    """List live workers: host, pid, queues, running steps and last heartbeat."""
    configure_logging(logging.WARNING)
    with user_errors(), Client(url, migrate=False) as client:  # reading creates nothing
        workers = client.store.live_workers()
    if as_json:
        print_json([dataclasses.asdict(w) for w in workers])
        return
    if not workers:
        stdout().print("no live workers", highlight=False)
        return
    table = Table()
    for column in ("worker", "host", "pid", "queues", "tasks", "running", "started", "last seen"):
        table.add_column(column)
    now = datetime.now(UTC)
    for w in workers:
        queues = "every queue" if w.queues is None else ", ".join(w.queues)
        if w.root_run_id:
            queues += f" (run {w.root_run_id[:8]})"
        table.add_row(
            w.id,
            w.host,
            str(w.pid),
            queues,
            str(len(w.tasks)),
            f"{w.running}/{w.concurrency}",
            _ago(w.started_at, now),
            _ago(w.last_seen_at, now),
        )
    stdout().print(table)


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = max(0.0, (now - moment).total_seconds())
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"
