"""Deployed definitions: deploying workflow versions, listing them, reading one back.

A name and version, once deployed, hold one spec for good. Deploying the
same content again changes nothing; other content under them is refused, so
every run started from a deployed version ran exactly what it says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from legato.config import redact_url
from legato.errors import DefinitionConflictError, WorkflowNotFoundError
from legato.model.definitions import Definition, DeployStatus
from legato.model.spec import WorkflowSpec
from legato.store.base import NewDefinition

if TYPE_CHECKING:
    from legato.store.sql import SQLStore

__all__ = ["definition", "definitions", "deploy_all"]

#: how much of a content hash messages show
HASH_PREFIX = 12


def deploy_all(store: SQLStore, new: Sequence[NewDefinition]) -> list[DeployStatus]:
    """Every definition in one transaction; a conflict rolls the whole call back."""
    for item in new:
        if not isinstance(item.spec, WorkflowSpec):
            raise TypeError(f"deploy takes WorkflowSpecs, got {type(item.spec).__name__}")
    statuses: list[DeployStatus] = []
    with store._transaction() as tx:
        for item in new:
            spec = item.spec
            tx.run(
                "insert_spec",
                hash=spec.content_hash,
                name=spec.name,
                version=spec.version,
                spec=spec.to_json(),
                now=store.clock.now(),
            )
            # The primary key settles a race: a second deploy of this name and
            # version waits here for the first to commit, then sees its row.
            created = tx.one(
                "insert_definition",
                name=spec.name,
                version=spec.version,
                hash=spec.content_hash,
                source=item.source,
                deployed_by=item.deployed_by,
                now=store.clock.now(),
            )
            store.checkpoint("definition_written")
            if created is not None:
                statuses.append("created")
                continue
            row = tx.one("definition_hash", name=spec.name, version=spec.version)
            assert row is not None  # a definition is never deleted
            if row["hash"] != spec.content_hash:
                raise _conflict(spec, row["hash"])
            statuses.append("unchanged")
    return statuses


def _conflict(spec: WorkflowSpec, existing: str) -> DefinitionConflictError:
    return DefinitionConflictError(
        f"workflow {spec.label} is already deployed with other content "
        f"(deployed: hash {existing[:HASH_PREFIX]}, this one: hash "
        f"{spec.content_hash[:HASH_PREFIX]}); a deployed version never changes: "
        "bump the version to deploy this one",
        name=spec.name,
        version=spec.version,
        existing=existing,
        new=spec.content_hash,
    )


def definitions(store: SQLStore, name: str | None = None) -> list[Definition]:
    with store._transaction(write=False) as tx:
        rows = tx.all("list_definitions", name=name)
    return [
        Definition(
            name=row["name"],
            version=row["version"],
            hash=row["hash"],
            deployed_at=store._ts(row["deployed_at"]),  # type: ignore[arg-type]
            source=row["source"],
            deployed_by=row["deployed_by"],
        )
        for row in rows
    ]


def definition(store: SQLStore, name: str, version: str | None = None) -> WorkflowSpec:
    with store._transaction(write=False) as tx:
        row = tx.one("definition_spec", name=name, version=version)
        if row is not None:
            return store.stored_spec(tx, row["spec"])
        versions = [r["version"] for r in tx.all("list_definitions", name=name)]
    where = redact_url(store.url)
    if version is not None and versions:
        noun = "version" if len(versions) == 1 else "versions"
        raise WorkflowNotFoundError(
            f"workflow {name!r} is deployed in {where} in {noun} {', '.join(versions)}, "
            f"not {version!r}"
        )
    which = f"{name}@{version}" if version else name
    raise WorkflowNotFoundError(f"no workflow {which!r} is deployed in {where}")
