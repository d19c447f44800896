"""``legato deploy`` and ``legato definitions list``: workflow versions kept in the database.

A deployed version can be started by name (``legato run NAME``,
``client.start("NAME")``) by any process, without its file. ``deploy``
reads and checks every file named before it stores anything, then stores
them all in one transaction: all or nothing. A version, once deployed, never
changes: deploying it again with the same content does nothing, and other
content under it is refused.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from legato.cli.display import format_time
from legato.cli.loading import load_workflow, spec_of
from legato.cli.options import JsonOption, UrlOption
from legato.cli.output import (
    EXIT_FAILED,
    EXIT_USAGE,
    configure_logging,
    error_line,
    fail,
    print_json,
    stderr,
    stdout,
    user_errors,
)
from legato.client import Client
from legato.errors import DefinitionConflictError, DefinitionError
from legato.files import SUFFIXES, definition_files, load_file
from legato.model.definitions import Definition, DeployResult
from legato.model.spec import WorkflowSpec

__all__ = ["app", "deploy"]

#: how much of a content hash is shown
HASH_SHOWN = 12

app = typer.Typer(
    help="Look at the workflow versions deployed in the database.", no_args_is_help=True
)


def deploy(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH...",
            help="Definition files (.yaml, .yml, .json), folders holding them (searched with "
            "their subfolders), or Python targets (file.py:NAME, package.module:NAME).",
            show_default=False,
        ),
    ],
    deployed_by: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="WHO",
            help="Who deploys, kept with each version (default: your user name).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a line per workflow.")
    ] = False,
    url: UrlOption = None,
) -> None:
    """Store workflow versions in the database, so anyone can start them by name.

    Every file is read and checked first; then all are stored in one
    transaction, or none. A version deployed again with the same content is
    left as it is; other content under a deployed version is refused: bump
    its version. Tasks are not needed here (workers bring them).

    Exits 0 when every workflow is deployed, 1 when a version is already
    deployed with other content, 2 on a bad file; nothing is stored then.
    """
    configure_logging(logging.WARNING)
    with user_errors():
        sources = _sources(paths)
    specs, problems = _read(sources)
    if problems:
        for problem in problems:
            error_line(problem)
        stderr().print("nothing was deployed", style="dim")
        raise typer.Exit(EXIT_USAGE)
    who = deployed_by if deployed_by is not None else _user()
    with user_errors(), Client(url) as client:
        try:
            results = client.deploy_all(specs, deployed_by=who)
        except DefinitionConflictError as exc:
            source = next(src for spec, src in specs if spec.label == f"{exc.name}@{exc.version}")
            fail(f"{source}: {exc}; nothing was deployed", EXIT_FAILED)
    if as_json:
        print_json(
            [
                {**dataclasses.asdict(result), "source": source}
                for result, (_, source) in zip(results, specs, strict=True)
            ]
        )
        return
    for result in results:
        stdout().print(_deployed_line(result), highlight=False, soft_wrap=True)


def _deployed_line(result: DeployResult) -> str:
    return f"{result.status} {result.label} (hash {result.hash[:HASH_SHOWN]})"


def _sources(paths: list[str]) -> list[str]:
    """The files (and Python targets) the paths name, folders opened."""
    found: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = definition_files([path])
            if not inside:
                raise DefinitionError(
                    f"{given}: the folder holds no definition files ({', '.join(SUFFIXES)})"
                )
            found.extend(str(p) for p in inside)
        else:
            found.append(given)
    return found


def _read(sources: Iterable[str]) -> tuple[list[tuple[WorkflowSpec, str]], list[str]]:
    """Every workflow of every source, once each, and every problem found."""
    specs: dict[tuple[str, str], tuple[WorkflowSpec, str]] = {}
    problems: list[str] = []
    for source in sources:
        try:
            if Path(source).suffix.lower() in SUFFIXES:  # every workflow of the file
                loaded = load_file(source)
            else:  # file.py:NAME, module:NAME, file.yaml:NAME
                loaded = [spec_of(load_workflow(source), source)]
        except DefinitionError as exc:
            problems.append(str(exc))
            continue
        for spec in loaded:
            key = (spec.name, spec.version)
            seen = specs.get(key)
            if seen is None:
                specs[key] = (spec, source)
            elif seen[0].content_hash != spec.content_hash:
                problems.append(
                    f"{source}: workflow {spec.label} is also in {seen[1]}, with other "
                    "content; keep one, or give one another version"
                )
    return list(specs.values()), problems


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment
        return None


@app.command("list")
def list_definitions(
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="Only versions of this workflow."),
    ] = None,
    as_json: JsonOption = False,
    url: UrlOption = None,
) -> None:
    """List deployed workflow versions, by name, the one deployed last first."""
    configure_logging(logging.WARNING)
    with user_errors(), Client(url, migrate=False) as client:  # reading creates nothing
        found = client.definitions(name)
    if as_json:
        print_json([dataclasses.asdict(definition) for definition in found])
    elif found:
        stdout().print(definitions_table(found))
    else:
        stdout().print("no definitions deployed", style="dim")


def definitions_table(definitions: Iterable[Definition]) -> Table:
    table = Table(title=None, header_style="bold")
    table.add_column("name")
    table.add_column("version")
    table.add_column("hash", no_wrap=True)
    table.add_column("deployed at", no_wrap=True)
    table.add_column("deployed by")
    table.add_column("source")
    for definition in definitions:
        table.add_row(
            definition.name,
            definition.version,
            definition.hash[:HASH_SHOWN],
            format_time(definition.deployed_at),
            definition.deployed_by or "",
            definition.source or "",
        )
    return table
