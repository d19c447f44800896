"""Deployed workflow definitions as readers see them, and what deploying one did.

A deployed definition pins a workflow's name and version to one spec (by
its content hash) for good, so anyone can start it by name without the file
or the code that built it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["Definition", "DeployResult", "DeployStatus"]

#: ``created``: stored now; ``unchanged``: this name, version and content were deployed already
DeployStatus = Literal["created", "unchanged"]


@dataclass(frozen=True)
class Definition:
    """One deployed version of a workflow."""

    name: str
    version: str
    #: the content hash of its spec (``WorkflowSpec.content_hash``)
    hash: str
    deployed_at: datetime
    #: where it was deployed from (a file), if the deployer said
    source: str | None = None
    deployed_by: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class DeployResult:
    """What deploying one workflow did."""

    name: str
    version: str
    hash: str
    status: DeployStatus

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"
