"""What the bulk operations report: the runs they changed, and those refused with why."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BulkResult"]


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
