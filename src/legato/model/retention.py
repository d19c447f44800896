"""Retention: which finished runs a prune deletes (:class:`Retention`), and what it did
(:class:`PruneResult`).

Only finished runs (completed, failed, cancelled) are ever pruned, and a run
only with every run of its tree: a child run goes with its root, never
before, and no tree with a run still going is touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from legato.durations import parse_duration
from legato.errors import ConfigError
from legato.model.states import RunStatus

__all__ = ["FINISHED", "PruneResult", "Retention"]

#: the statuses a prune may delete
FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)

#: how often workers apply an automatic rule, unless told otherwise
DEFAULT_EVERY = 3600.0
#: run trees deleted per transaction, at most
DEFAULT_BATCH = 500


@dataclass(frozen=True)
class Retention:
    """A prune rule: finished runs (of ``statuses``, of ``workflow`` if given) that
    finished more than ``older_than`` seconds ago, with their child runs.

    As the automatic rule (``LEGATO_RETENTION=30d``, or ``Worker(retention=...)``)
    one worker applies it at most once ``every`` seconds, whichever worker it is.
    """

    older_than: float
    statuses: tuple[RunStatus, ...] = FINISHED
    workflow: str | None = None
    every: float = DEFAULT_EVERY
    batch_size: int = DEFAULT_BATCH

    @classmethod
    def of(
        cls,
        older_than: str | float,
        *,
        statuses: Iterable[str | RunStatus] | str | None = None,
        workflow: str | None = None,
        every: str | float | None = None,
        batch_size: int | None = None,
        source: str = "older_than",
    ) -> Retention:
        """A rule from durations (``"30d"``) and status names; :class:`ConfigError`
        naming where a bad value came from: ``source`` is the setting that gave the
        age (``LEGATO_RETENTION``, whose siblings give the rest) or its argument."""

        def name(part: str) -> str:
            return f"{source}_{part.upper()}" if source.isupper() else part

        try:
            age = parse_duration(older_than, field=source, allow_zero=False)
            interval = parse_duration(
                DEFAULT_EVERY if every is None else every, field=name("every"), allow_zero=False
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        assert age is not None and interval is not None
        size = DEFAULT_BATCH if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"batch_size must be a whole number of at least 1, got {size!r}")
        return cls(
            older_than=age,
            statuses=_finished(statuses, name("status")),
            workflow=workflow or None,
            every=interval,
            batch_size=size,
        )


@dataclass
class PruneResult:
    """What a prune deleted (or, ``dry_run``, would delete)."""

    #: top-level runs deleted
    runs: int = 0
    #: their child runs (sub-workflows) deleted with them
    child_runs: int = 0
    #: transactions it took
    batches: int = 0
    dry_run: bool = False
    #: run trees left because a run in them is not finished
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.runs + self.child_runs


def _finished(
    statuses: Iterable[str | RunStatus] | str | None, source: str
) -> tuple[RunStatus, ...]:
    if statuses is None:
        return FINISHED
    items = [statuses] if isinstance(statuses, str) else list(statuses)
    found: list[RunStatus] = []
    for item in items:
        for name in str(item).replace(",", " ").split():
            try:
                status = RunStatus(name.strip().lower())
            except ValueError:
                status = None
            if status not in FINISHED:
                raise ConfigError(
                    f"{source}: {name!r} is not a status a run finishes in; only finished runs "
                    "are pruned (completed, failed or cancelled)"
                )
            assert status is not None
            if status not in found:
                found.append(status)
    if not found:
        raise ConfigError(f"{source} names no status; expected completed, failed or cancelled")
    return tuple(found)
