"""What the bulk operations take and report: which runs, and what became of each."""

from __future__ import annotations

from dataclasses import dataclass, field

from legato.model.states import RunStatus

__all__ = ["BulkResult", "RunFilter"]


@dataclass(frozen=True)
class RunFilter:
    """Which runs a bulk operation reaches: every field given must match.

    ``limit`` bounds how many runs are read (newest first); ``None`` reads them all.
    """

    status: RunStatus | str | None = None
    workflow: str | None = None
    #: key/value tags the run must carry (each of them)
    tags: dict[str, str] = field(default_factory=dict)
    limit: int | None = None

    def matches_tags(self, tags: dict[str, str]) -> bool:
        return all(tags.get(k) == v for k, v in self.tags.items())


@dataclass(frozen=True)
class BulkResult:
    """What a bulk operation did: the runs it changed, and those it refused with why."""

    operation: str
    changed: tuple[str, ...] = ()
    #: run id -> why the operation was refused for it
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def matched(self) -> int:
        return len(self.changed) + len(self.refused)
