"""``legato validate``, ``legato export`` and ``legato schema``: definition files as text.

``validate`` reads every file named (or found in folders named) and prints
every problem of every file at once, each at its file, line and column, then
exits 1 if there was one; it opens no database and stores nothing. With
``--import`` (or ``LEGATO_IMPORTS``) it also checks that each task a step
uses is registered and that the step's arguments fit the task.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from legato.cli.loading import check_workflow, load_module, load_workflow, spec_of
from legato.cli.options import ImportsOption
from legato.cli.output import EXIT_FAILED, configure_logging, exit_now, stderr, user_errors
from legato.config import Settings
from legato.define.tasks import default_registry
from legato.define.validate import check_calls
from legato.errors import DefinitionError, LegatoError
from legato.files import (
    SUFFIXES,
    compile_file,
    definition_files,
    json_schema,
    to_json_text,
    to_yaml,
)
from legato.files.compile import Compiled

__all__ = ["export", "schema", "validate"]


def validate(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH...",
            help="Definition files (.yaml, .yml, .json), folders holding them, "
            "or Python targets (file.py:NAME).",
            show_default=False,
        ),
    ],
    imports: ImportsOption = None,
) -> None:
    """Check workflow definitions and print every problem, each at its line and column.

    Exits 0 when every file is valid and 1 when one is not. Nothing is stored.
    """
    configure_logging(logging.WARNING)
    with user_errors():
        settings = Settings.load(imports=tuple(imports) if imports else None)
        for source in settings.imports:
            load_module(source)
    check_tasks = bool(settings.imports)
    console = stderr()
    files = 0
    bad = 0
    problems_total = 0
    for target in _targets(paths):
        files += 1
        problems, summary = _check(target, check_tasks)
        if problems:
            bad += 1
            problems_total += len(problems)
            for problem in problems:
                console.print(problem, style="red", soft_wrap=True, highlight=False, markup=False)
        else:
            console.print(
                f"{target}: ok ({summary})", soft_wrap=True, highlight=False, markup=False
            )
    if not check_tasks:
        console.print(
            "tasks were not checked: give --import MODULE (or LEGATO_IMPORTS) to check them",
            style="dim",
            soft_wrap=True,
        )
    if bad:
        noun = "problem" if problems_total == 1 else "problems"
        console.print(
            f"{bad} of {files} {'file' if files == 1 else 'files'} invalid: "
            f"{problems_total} {noun}",
            style="red",
        )
        exit_now(EXIT_FAILED)


def _targets(paths: list[str]) -> list[str]:
    found: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(str(p) for p in definition_files([path]))
        else:
            found.append(given)
    return found


def _check(target: str, check_tasks: bool) -> tuple[list[str], str]:
    """The problems of one target, or none and a summary of what it defines."""
    if Path(target).suffix.lower() not in SUFFIXES:
        try:
            workflow = load_workflow(target)
            if check_tasks:
                spec, _ = check_workflow(workflow, target)
            else:
                spec = spec_of(workflow, target)
        except LegatoError as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            return [p if p.startswith(target) else f"{target}: {p}" for p in problems], ""
        return [], f"{spec.label}, {len(spec.graph.steps)} steps"
    try:
        compiled = compile_file(target)
    except DefinitionError as exc:
        return exc.problems, ""
    found: list[str] = []
    if check_tasks:
        for item in compiled:
            found.extend(_task_problems(item))
    labels = ", ".join(f"{c.spec.label} ({len(c.spec.graph.steps)} steps)" for c in compiled)
    return found, labels


def _task_problems(item: Compiled) -> list[str]:
    problems = []
    found = {}
    for step in item.spec.task_calls():
        name = step.task or ""
        if name in default_registry:
            found[name] = default_registry.get(name)
            continue
        tagged = default_registry.tagged(name)
        known = (
            f"tagged versions: {', '.join(tagged)}"
            if tagged
            else f"registered: {', '.join(default_registry.names()[:8]) or 'none'}"
        )
        path = item.paths.get(step.id, ())
        where = item.document.where((*path, "uses"))
        problems.append(
            f"{where}: step {step.id!r} uses task {name!r}, which is not registered ({known})"
        )
    if not problems:
        try:
            check_calls(item.spec, found)
        except DefinitionError as exc:
            problems.extend(item.locate(p) for p in exc.problems)
    return problems


class ExportFormat(StrEnum):
    yaml = "yaml"
    json = "json"


def export(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The workflow: path/to/file.py:NAME, package.module:NAME or file.yaml[:NAME].",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        ExportFormat,
        typer.Option("--format", "-f", metavar="FORMAT", help="yaml or json."),
    ] = ExportFormat.yaml,
) -> None:
    """Print a workflow as a definition file (YAML or JSON), however it was built.

    Reading the output back gives the same workflow: legato export flow.py:wf > flow.yaml
    """
    configure_logging(logging.WARNING)
    with user_errors():
        spec = spec_of(load_workflow(target), target)
        text = to_json_text(spec) if fmt is ExportFormat.json else to_yaml(spec)
    typer.echo(text, nl=False)


def schema() -> None:
    """Print the JSON Schema of definition files, for editors to check and complete them.

    legato schema > legato.schema.json, then in a YAML file's first line:
    # yaml-language-server: $schema=legato.schema.json
    """
    typer.echo(json.dumps(json_schema(), indent=2))
