"""Workflows found by name: definition files in the conf path first, then deployed ones.

``client.start("etl")`` and ``legato run etl`` look for the workflow ``etl``
in the definition files (``.yaml``, ``.yml``, ``.json``) of the folders of
``LEGATO_CONF_PATH`` (default ``./workflows``, searched with their
subfolders), then among the definitions deployed in the database. Files are
read at each lookup, so an edit counts at once; a file that cannot be read
is an error naming it, never skipped, so a broken file is never passed over
for an older version deployed elsewhere. Without a version the newest is
taken: in the conf path, the highest version in natural order (``1.10``
after ``1.9``, ``10`` after ``9``); among deployed ones, the one deployed
last.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from legato.config import redact_url
from legato.errors import DefinitionError, WorkflowNotFoundError
from legato.files import definition_files, load_file
from legato.model.spec import NAME_PATTERN, VERSION_PATTERN, WorkflowSpec
from legato.store.base import Store

__all__ = ["Found", "find_in_conf", "find_workflow", "natural_key", "split_name"]


@dataclass(frozen=True)
class Found:
    """A workflow found by name, and where: its file, or the database it is deployed in."""

    spec: WorkflowSpec
    source: str
    deployed: bool = False


def split_name(text: str) -> tuple[str, str | None] | None:
    """``etl`` or ``etl@2`` as ``(name, version)``; ``None`` for text that is no such name."""
    name, sep, version = text.partition("@")
    if not NAME_PATTERN.match(name) or "__" in name:
        return None
    if not sep:
        return name, None
    if not VERSION_PATTERN.match(version) or "__" in version:
        return None
    return name, version


def natural_key(version: str) -> list[str | int]:
    """Versions in natural order: runs of digits compare as numbers (``1.10`` > ``1.9``)."""
    # re.split with a group alternates text and digits, so like compares with like.
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", version))]


def find_in_conf(name: str, version: str | None, folders: Sequence[str]) -> Found | None:
    """The workflow ``name`` (at ``version``, else the newest) in the folders' definition
    files, or ``None``. A file that cannot be read, or two files giving one version
    different content, is a :class:`DefinitionError`."""
    found: dict[str, tuple[WorkflowSpec, Path]] = {}
    for path in _files(folders):
        for spec in _load_definition_file(path):
            if spec.name != name or (version is not None and spec.version != version):
                continue
            seen = found.get(spec.version)
            if seen is not None and seen[0].content_hash != spec.content_hash:
                raise DefinitionError(
                    f"workflow {spec.label} is defined in both {seen[1]} and {path}, "
                    "with different content; keep one, or give one another version"
                )
            found.setdefault(spec.version, (spec, path))
    if not found:
        return None
    spec, path = found[max(found, key=natural_key)]
    return Found(spec, str(path))


def find_workflow(
    name: str,
    version: str | None,
    *,
    folders: Sequence[str],
    store: Store | None,
    url: str,
) -> Found:
    """The workflow ``name``: from the conf path's files, else deployed in ``store``.

    ``store`` is ``None`` where there is no database (yet): then only files count.
    Not found anywhere is one :class:`WorkflowNotFoundError` naming each place looked.
    """
    found = find_in_conf(name, version, folders)
    if found is not None:
        return found
    deployed: list[str] = []
    if store is not None:
        try:
            return Found(store.definition(name, version), redact_url(url), deployed=True)
        except WorkflowNotFoundError:
            deployed = [d.version for d in store.definitions(name)]
    raise _not_found(name, version, folders, url, deployed, store is not None)


def _not_found(
    name: str,
    version: str | None,
    folders: Sequence[str],
    url: str,
    deployed: list[str],
    database: bool,
) -> WorkflowNotFoundError:
    which = f"{name}@{version}" if version else name
    in_files = [s.version for s in _specs_named(name, folders)]
    searched = ", ".join(_shown(folder) for folder in folders)
    files = f"no definition file in {searched} holds it"
    if in_files:
        files += f" (they hold {_versions(in_files)})"
    where = redact_url(url)
    if not database:
        stored = f"nothing is deployed in {where} (no legato database there)"
    elif deployed:
        stored = f"{where} has {_versions(deployed)} deployed"
    else:
        stored = f"none is deployed in {where}"
    return WorkflowNotFoundError(
        f"no workflow {which!r}: {files}, and {stored}; put its file in a folder of "
        "LEGATO_CONF_PATH or deploy it (legato deploy FILE)"
    )


def _specs_named(name: str, folders: Sequence[str]) -> list[WorkflowSpec]:
    specs = [s for p in _files(folders) for s in _load_definition_file(p) if s.name == name]
    return sorted(specs, key=lambda s: natural_key(s.version))


def _versions(versions: list[str]) -> str:
    unique = sorted(set(versions), key=natural_key)
    noun = "version" if len(unique) == 1 else "versions"
    return f"{noun} {', '.join(unique)}"


def _shown(folder: str) -> str:
    return folder if Path(folder).is_dir() else f"{folder} (no such folder)"


def _files(folders: Sequence[str]) -> list[Path]:
    return definition_files(Path(f) for f in folders if Path(f).is_dir())


def _load_definition_file(path: Path) -> list[WorkflowSpec]:
    """The workflows a definition file holds; a DefinitionError names what is wrong where."""
    return load_file(path)
