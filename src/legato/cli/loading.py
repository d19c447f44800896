"""Find the workflow a command names: ``file.py:attr``, ``module:attr``, a definition
file, or a workflow's name; and task modules.

A file is imported as a module named after its stem, with its folder on
``sys.path``, so its tasks get the names ``@legato.task`` gives when the file
is run as a script (``etl.py`` -> ``etl.extract``) and a worker that imports
the same file or module finds the same names. Whatever goes wrong while
importing becomes a :class:`DefinitionError` naming the file and line.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from legato.catalog import Found, find_workflow, split_name
from legato.client import Client
from legato.config import Settings
from legato.define.builder import Workflow
from legato.define.tasks import Task, TaskRegistry, default_registry
from legato.define.validate import check_tasks
from legato.errors import DefinitionError, LegatoError, SchemaVersionError, WorkflowNotFoundError
from legato.files import SUFFIXES, load_file
from legato.model.spec import WorkflowSpec

__all__ = [
    "Target",
    "check_workflow",
    "load_module",
    "load_target",
    "load_workflow",
    "spec_of",
    "split_target",
]

#: a legato.Workflow (and so a legato.Sequence) or a WorkflowSpec
WorkflowObject = Workflow | WorkflowSpec

#: folders whose frames are not the user's: legato's own and the installed libraries
_LIBRARY_DIRS = tuple(
    {str(Path(__file__).resolve().parents[1])}
    | {sysconfig.get_path(p) for p in ("stdlib", "platstdlib", "purelib", "platlib")}
)


@dataclass(frozen=True)
class Target:
    """``source[:attr]`` as given: ``examples/etl.py:wf`` or ``myapp.flows:etl``."""

    source: str
    attr: str | None

    def __str__(self) -> str:
        return f"{self.source}:{self.attr}" if self.attr else self.source


def split_target(text: str) -> Target:
    source, sep, attr = text.rpartition(":")
    if not sep:
        return Target(text, None)
    if not source or not attr:
        raise DefinitionError(
            f"{text!r}: expected path/to/file.py:workflow or package.module:workflow"
        )
    return Target(source, attr)


def load_target(text: str, settings: Settings) -> tuple[WorkflowObject, Found | None]:
    """TARGET as ``legato run`` takes it, and where a workflow given by name was found.

    A workflow's name (``etl``, or ``etl@2`` for a version: no ``:``, not a file) is
    looked for in the definition files of the conf path, then among the definitions
    deployed in the database (read only: no database is created), and last imported
    as a module, as any other target is (a module's only workflow).
    """
    named = None if ":" in text or Path(text).is_file() else split_name(text)
    if named is None:
        return load_workflow(text), None
    name, version = named
    try:
        found = _find_named(name, version, settings)
    except WorkflowNotFoundError as missing:
        if version is not None:
            raise
        try:
            return load_workflow(text), None
        except DefinitionError as exc:
            cause = exc.__cause__
            if isinstance(cause, ModuleNotFoundError) and cause.name == text:
                raise WorkflowNotFoundError(
                    f"{missing}; and no module named {text!r} can be imported"
                ) from None
            raise
    return found.spec, found


def _find_named(name: str, version: str | None, settings: Settings) -> Found:
    try:
        client = Client(settings.url, migrate=False, conf_path=settings.conf_path)
    except SchemaVersionError:  # no database, or no legato schema in it: nothing deployed
        return find_workflow(
            name, version, folders=settings.conf_path, store=None, url=settings.url
        )
    with client:
        return find_workflow(
            name, version, folders=settings.conf_path, store=client.store, url=client.url
        )


def load_workflow(text: str) -> WorkflowObject:
    """Import the target's file or module and return the workflow it names.

    Without ``:attr``, the module's only workflow is taken.
    """
    target = split_target(text)
    if Path(target.source).suffix.lower() in SUFFIXES:
        return _from_file(target)
    module = load_module(target.source)
    if target.attr is None:
        return _only_workflow(module, target.source)
    obj: Any = module
    for part in target.attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = _workflow_names(module)
            hint = f"workflows in it: {', '.join(found)}" if found else "it defines no workflow"
            raise DefinitionError(
                f"{target.source} has no attribute {target.attr!r} ({hint})"
            ) from None
    if not isinstance(obj, WorkflowObject):
        raise DefinitionError(
            f"{target} is a {type(obj).__name__}, not a workflow "
            "(expected a legato.Workflow, legato.Sequence or WorkflowSpec)"
        )
    return obj


def _from_file(target: Target) -> WorkflowSpec:
    """The workflow of a definition file: the one it holds, or the one named."""
    specs = load_file(target.source)
    if target.attr is None:
        if len(specs) == 1:
            return specs[0]
        names = ", ".join(s.label for s in specs)
        raise DefinitionError(
            f"{target.source} defines several workflows ({names}); name one: "
            f"{target.source}:{specs[0].name}"
        )
    name, _, version = target.attr.partition("@")
    found = [s for s in specs if s.name == name and (not version or s.version == version)]
    if not found:
        names = ", ".join(s.label for s in specs)
        raise DefinitionError(f"{target.source} defines no workflow {target.attr!r} ({names})")
    return found[-1]


def spec_of(workflow: WorkflowObject, where: str | None = None) -> WorkflowSpec:
    """The validated spec, without looking for its tasks (exports and diagrams need none)."""
    try:
        if isinstance(workflow, Workflow):
            return workflow.spec
        workflow.check()
        return workflow
    except DefinitionError as exc:
        if where is None:
            raise
        raise DefinitionError(f"{where}: {exc}", exc.problems) from exc


def check_workflow(
    workflow: WorkflowObject, where: str | None = None, registry: TaskRegistry | None = None
) -> tuple[WorkflowSpec, dict[str, Task]]:
    """The validated spec and its tasks; raises before anything touches a database.

    ``where`` (the target as the user wrote it) prefixes definition errors.
    """
    try:
        if isinstance(workflow, Workflow):
            spec, extra = workflow.spec, workflow.tasks
        else:
            workflow.check()
            spec, extra = workflow, {}
        tasks = check_tasks(spec, registry if registry is not None else default_registry, extra)
    except DefinitionError as exc:
        if where is None:
            raise
        raise DefinitionError(f"{where}: {exc}", exc.problems) from exc
    return spec, tasks


def load_module(source: str) -> ModuleType:
    """Import ``source``: a path to a ``.py`` file or a dotted module name."""
    if source.endswith(".py") or "/" in source or os.sep in source:
        return _load_file(source)
    return _import_name(source)


# -- files and modules ------------------------------------------------------------------


def _load_file(source: str) -> ModuleType:
    path = Path(source).expanduser()
    if not path.exists():
        raise DefinitionError(f"{source}: no such file")
    if not path.is_file():
        raise DefinitionError(f"{source}: not a file")
    path = path.resolve()
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file and Path(existing_file).resolve() == path:
            return existing
        # Two files with one module name would give their tasks the same names.
        raise DefinitionError(
            f"{source} would be imported as module {name!r}, but a module of that name "
            f"is already imported (from {existing_file or 'the interpreter'}); rename the file"
        )
    _on_sys_path(path.parent)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DefinitionError(f"{source}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _import_failed(source, exc) from exc
    return module


def _import_name(name: str) -> ModuleType:
    # A console script's sys.path starts with its own folder, not the working
    # directory: put the working directory there, as `python -m` does.
    _on_sys_path(Path.cwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise DefinitionError(
                f"no module named {exc.name!r} (looked in the working directory and sys.path); "
                "give a module name such as myapp.flows or a path such as flows.py"
            ) from exc
        raise _import_failed(name, exc) from exc
    except Exception as exc:
        raise _import_failed(name, exc) from exc


def _on_sys_path(folder: Path) -> None:
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _import_failed(source: str, exc: Exception) -> DefinitionError:
    """Name the line that failed: the user's, not importlib's or legato's."""
    if isinstance(exc, SyntaxError):
        filename, lineno, message = exc.filename, exc.lineno, f"SyntaxError: {exc.msg}"
    else:
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")
        ]
        frames = [f for f in frames if not f.filename.startswith(_LIBRARY_DIRS)] or frames
        filename, lineno = (frames[-1].filename, frames[-1].lineno) if frames else (None, None)
        message = str(exc) or type(exc).__name__
        if not isinstance(exc, LegatoError):  # legato's own messages say what they are
            message = f"{type(exc).__name__}: {message}"
    if filename is None:
        return DefinitionError(f"cannot load {source}: {message}")
    where = _location(filename, lineno)
    if Path(filename).resolve() == Path(source).resolve():
        return DefinitionError(f"{where}: {message}")
    return DefinitionError(f"cannot load {source} ({where}): {message}")


def _location(filename: str | None, lineno: int | None) -> str:
    shown = filename or "?"
    if filename:
        try:
            relative = os.path.relpath(filename)
        except ValueError:  # another drive
            relative = filename
        if not relative.startswith(".."):
            shown = relative
    return f"{shown}, line {lineno}" if lineno else shown


# -- finding workflows in a module ---------------------------------------------------------


def _workflow_names(module: ModuleType) -> list[str]:
    seen: dict[int, str] = {}
    for name, value in _public(vars(module)).items():
        if isinstance(value, WorkflowObject):
            seen.setdefault(id(value), name)
    return list(seen.values())


def _only_workflow(module: ModuleType, source: str) -> WorkflowObject:
    names = _workflow_names(module)
    if len(names) == 1:
        workflow: WorkflowObject = getattr(module, names[0])
        return workflow
    if not names:
        raise DefinitionError(
            f"{source} defines no workflow (a legato.Workflow, legato.Sequence or WorkflowSpec)"
        )
    raise DefinitionError(
        f"{source} defines several workflows ({', '.join(names)}); name one: {source}:{names[0]}"
    )


def _public(namespace: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in namespace.items() if not k.startswith("_")}
