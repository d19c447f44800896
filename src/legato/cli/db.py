"""``legato db upgrade``: create or upgrade the database schema explicitly."""

from __future__ import annotations

import logging

import typer

from legato.cli.options import UrlOption
from legato.cli.output import configure_logging, redact_url, stdout, user_errors
from legato.client import Client
from legato.errors import SchemaVersionError

__all__ = ["app"]

app = typer.Typer(help="Manage the database.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(url: UrlOption = None) -> None:
    """Apply the migrations the database is missing (safe while others use it)."""
    configure_logging(logging.WARNING)
    with user_errors():
        try:
            # Opening without migrating checks the schema: it passes only when up to date.
            with Client(url, migrate=False) as client:
                version = client.store.schema_version()
                where = redact_url(client.url)
            stdout().print(f"{where} is already at schema version {version}", highlight=False)
            return
        except SchemaVersionError:
            pass
        # Missing migrations are applied as the database is opened; a schema newer
        # than this legato is refused there, with a message saying so.
        with Client(url) as client:
            version = client.store.schema_version()
            where = redact_url(client.url)
    stdout().print(f"upgraded {where} to schema version {version}", highlight=False)
