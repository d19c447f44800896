"""The ``legato`` command: wiring of its subcommands."""

from __future__ import annotations

from typing import Annotated

import typer

from legato import __version__
from legato.cli import db, definitions, files, logs, operate, runs, tracking, workers
from legato.cli.graph import graph
from legato.cli.help import plain_help
from legato.cli.run import run
from legato.cli.worker import worker

__all__ = ["app", "main"]

app = typer.Typer(
    name="legato",
    help="Durable workflows on SQLite and PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command("run")(run)
runs.app.command("search")(tracking.search)
runs.app.command("history")(tracking.history)
runs.app.command("logs")(logs.logs)
runs.app.command("watch")(logs.watch)
app.add_typer(operate.app, name="runs")  # legato.cli.runs' group, with the operations
app.command("prune")(tracking.prune)
app.command("worker")(worker)
app.command("graph")(graph)
app.command("validate")(files.validate)
app.command("export")(files.export)
app.command("schema")(files.schema)
app.command("deploy")(definitions.deploy)
app.add_typer(definitions.app, name="definitions")
app.add_typer(workers.app, name="workers")
app.add_typer(db.app, name="db")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"legato {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Durable workflows on SQLite and PostgreSQL."""


# Every command is wired above: draw their help without placeholders such as <bool>.
plain_help(app)


def main() -> None:
    """Console script entry point."""
    app(prog_name="legato")


if __name__ == "__main__":
    main()
