"""Options several commands share, declared once so they read and behave alike."""

from __future__ import annotations

from typing import Annotated

import typer

from legato.config import DEFAULT_URL
from legato.durations import parse_duration
from legato.errors import ConfigError

__all__ = ["ImportsOption", "JsonOption", "UrlOption", "VerboseOption", "duration_option"]

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="LEGATO_URL",
        metavar="URL",
        help=f"Database: sqlite:///path.db or postgresql://user@host/db (default: {DEFAULT_URL})",
        show_default=False,
    ),
]

ImportsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        "-i",
        metavar="MODULE_OR_FILE",
        help="A module or file defining tasks (and filters); repeatable. Default: LEGATO_IMPORTS.",
        show_default=False,
    ),
]

RunIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN_ID",
        help="The run's id, or its first 8 or more characters.",
        show_default=False,
    ),
]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show tracebacks of failed steps.")
]


def duration_option(value: str | None, option: str, *, allow_zero: bool = True) -> float | None:
    """``30s``, ``5m``, ``1h30m`` or seconds; a bad value is a usage error naming the option.

    Negative and not finite values (``inf``, ``nan``) are refused, and zero too
    with ``allow_zero=False``, for options where zero would mean nothing.
    """
    try:
        return parse_duration(value, field=option, allow_zero=allow_zero)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
