"""Load a dialect's SQL file into named statements (``-- name: <name>`` blocks)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from legato.errors import SchemaVersionError

__all__ = ["check_schema_version", "load_queries", "migration_files", "read_sql"]

_BLOCK = re.compile(r"^-- (name|fragment): ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_USE = re.compile(r"\{\{([a-z_][a-z0-9_]*)\}\}")


def read_sql(dialect: str, filename: str) -> str:
    return resources.files("legato.store").joinpath(dialect, filename).read_text("utf-8")


@cache
def load_queries(dialect: str) -> dict[str, str]:
    """The named statements of a dialect's ``queries.sql``.

    A ``-- fragment: <name>`` block is a piece several statements share (a
    predicate, a column list), written into each where it says ``{{name}}``."""
    text = read_sql(dialect, "queries.sql")
    parts = _BLOCK.split(text)
    blocks: dict[str, dict[str, str]] = {"name": {}, "fragment": {}}
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        if name in blocks[kind]:
            raise ValueError(f"{dialect}/queries.sql defines {kind} {name!r} twice")
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        blocks[kind][name] = "\n".join(lines).strip().rstrip(";")
    fragments = blocks["fragment"]

    def fragment(match: re.Match[str]) -> str:
        found = fragments.get(match.group(1))
        if found is None:
            raise ValueError(f"{dialect}/queries.sql uses an unknown fragment {match.group(0)}")
        return found

    return {name: _USE.sub(fragment, body) for name, body in blocks["name"].items()}


def migration_files(dialect: str) -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for each numbered migration, in order."""
    folder = resources.files("legato.store").joinpath(dialect, "migrations")
    found = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d{4})_([a-z0-9_]+)\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort()
    for expected, (version, _, _) in enumerate(found, start=1):
        if version != expected:
            raise ValueError(f"{dialect} migrations skip from {expected - 1} to {version}")
    return found


def check_schema_version(url: str, current: int, expected: int) -> None:
    """Refuse a database whose schema is not this legato's, saying what to run."""
    if current == expected:
        return
    upgrade = f"legato db upgrade --url {url}"
    if current == 0:
        raise SchemaVersionError(
            f"{url} has no legato schema (empty, or another program's database); "
            f"create it with: {upgrade}"
        )
    if current < expected:
        raise SchemaVersionError(
            f"{url} has schema version {current}, this legato needs {expected}; "
            f"upgrade it with: {upgrade}"
        )
    raise SchemaVersionError(
        f"{url} has schema version {current}, newer than this legato ({expected}); upgrade legato"
    )
