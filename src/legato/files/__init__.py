"""Workflow definitions in YAML and JSON files, read into the one spec and written back.

``load_file("etl.yaml")`` gives the file's specs (a file may hold several
documents); problems are one :class:`~legato.errors.DefinitionError` naming
each by file, line and column. ``to_yaml(spec)`` writes any spec, however it
was built, in the same format, and reading that back gives the same spec.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from legato.config import read_flag
from legato.errors import DefinitionError
from legato.files.compile import Compiled, compile_document
from legato.files.documents import Document, parse_documents, read_documents
from legato.files.env import EnvRules
from legato.files.export import to_data, to_json_text, to_yaml
from legato.files.schema import json_schema
from legato.model.spec import WorkflowSpec

__all__ = [
    "SUFFIXES",
    "Compiled",
    "EnvRules",
    "compile_file",
    "definition_files",
    "json_schema",
    "load_file",
    "load_text",
    "shell_allowed",
    "to_data",
    "to_json_text",
    "to_yaml",
]

#: the suffixes of definition files
SUFFIXES = (".yaml", ".yml", ".json")


def shell_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the operator turned shell stages on (``LEGATO_ALLOW_SHELL=1``), as the
    workers that would run them read it."""
    environ = os.environ if environ is None else environ
    return read_flag("LEGATO_ALLOW_SHELL", environ.get("LEGATO_ALLOW_SHELL", ""))


def compile_file(
    path: str | Path, *, env: EnvRules | None = None, allow_shell: bool | None = None
) -> list[Compiled]:
    """Every workflow of a definition file, compiled, with where each step was written.

    Problems in any document are gathered into one :class:`DefinitionError`.
    """
    return _compile_all(read_documents(path), env=env, allow_shell=allow_shell)


def load_file(
    path: str | Path, *, env: EnvRules | None = None, allow_shell: bool | None = None
) -> list[WorkflowSpec]:
    """The specs of a ``.yaml``, ``.yml`` or ``.json`` definition file."""
    return [c.spec for c in compile_file(path, env=env, allow_shell=allow_shell)]


def load_text(
    text: str,
    source: str = "<text>",
    *,
    json_syntax: bool = False,
    env: EnvRules | None = None,
    allow_shell: bool | None = None,
) -> list[WorkflowSpec]:
    """The specs of definition text (YAML, or JSON with ``json_syntax``)."""
    documents = parse_documents(text, source, json_syntax=json_syntax)
    return [c.spec for c in _compile_all(documents, env=env, allow_shell=allow_shell)]


def definition_files(paths: Iterable[str | Path]) -> list[Path]:
    """The definition files named, and those inside the folders named (sorted, recursive)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            )
        else:
            found.append(path)
    return found


def _compile_all(
    documents: list[Document], *, env: EnvRules | None, allow_shell: bool | None
) -> list[Compiled]:
    rules = env if env is not None else EnvRules.from_env()
    shell = shell_allowed() if allow_shell is None else allow_shell
    compiled: list[Compiled] = []
    problems: list[str] = []
    for document in documents:
        try:
            compiled.append(compile_document(document, env=rules, allow_shell=shell))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    names: dict[tuple[str, str], Compiled] = {}
    for item in compiled:
        key = (item.spec.name, item.spec.version)
        if key in names:
            problems.append(
                f"{item.where()}: workflow {item.spec.label} is defined twice in "
                f"{item.document.source} (first at {names[key].where()})"
            )
        names.setdefault(key, item)
    if problems:
        source = documents[0].source if documents else "definitions"
        if len(problems) == 1:
            raise DefinitionError(problems[0], problems)
        lines = "\n".join(f"  {p}" for p in problems)
        raise DefinitionError(f"{source} has {len(problems)} problems:\n{lines}", problems)
    return compiled
