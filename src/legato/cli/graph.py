"""``legato graph TARGET``: the workflow drawn as Graphviz DOT or a Mermaid flowchart."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

import typer

from legato.cli.loading import load_workflow, spec_of
from legato.cli.output import configure_logging, user_errors
from legato.diagrams import to_dot, to_mermaid

__all__ = ["graph"]


class DiagramFormat(StrEnum):
    dot = "dot"
    mermaid = "mermaid"


def graph(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The workflow: path/to/file.py:NAME or package.module:NAME.",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        DiagramFormat,
        typer.Option("--format", "-f", metavar="FORMAT", help="dot (Graphviz) or mermaid."),
    ] = DiagramFormat.dot,
) -> None:
    """Print the workflow as a diagram: each kind of step in a shape of its own.

    Render DOT with: legato graph flow.py:wf | dot -Tsvg > flow.svg

    Mermaid goes into a Markdown file in a ```mermaid block.
    """
    configure_logging(logging.WARNING)
    with user_errors():
        spec = spec_of(load_workflow(target), target)
        text = to_mermaid(spec) if fmt is DiagramFormat.mermaid else to_dot(spec)
    typer.echo(text, nl=False)
