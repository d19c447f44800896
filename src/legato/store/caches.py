"""What a store keeps in memory about runs and tasks, and how it fills it.

Caches hold only what never changes once written (a run's params and metadata
for one attempt of the run, the number of counter shards of a scope) or what a
committed transaction saw
(a run has started; the defaults a worker recorded for a task, kept for a few
seconds), filled after the commit, so a transaction that rolls back cannot
leave them disagreeing with the database.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from legato.engine.clock import Clock
from legato.engine.planner import TaskDefaults
from legato.errors import RunNotFoundError
from legato.model.graph import Graph
from legato.model.spec import RetryPolicy
from legato.store.base import Tx

__all__ = ["RunCaches", "RunContext"]


@dataclass(frozen=True)
class RunContext:
    """What expressions read about a run: fixed when the run is created."""

    spec_hash: str
    params: dict[str, Any]
    run: dict[str, Any]
    root_run_id: str = ""
    parent_run_id: str | None = None
    parent_step: str | None = None
    #: the defaults of the tasks its spec calls, as its starter resolved them
    task_defaults: dict[str, TaskDefaults] = field(default_factory=dict)
    #: the run's attempt it was read at: a run set going again (retried, rerun with
    #: new params, restarted on a newer version) has another, and is read again
    attempt: int = 1


class RunCaches:
    """The caches of :class:`~legato.store.sql.SQLStore` (which sets them up)."""

    clock: Clock
    _cache_lock: threading.Lock
    _runs: OrderedDict[str, RunContext]
    _shards: OrderedDict[tuple[str, str, int], int]
    _defaults: dict[str, tuple[TaskDefaults, float]]
    _started: OrderedDict[str, None]

    # the dialect's hooks, as SQLStore declares them
    def _transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def _ts(self, value: Any) -> datetime | None:
        raise NotImplementedError

    def _json(self, value: Any) -> Any:
        raise NotImplementedError

    def _id(self, value: Any) -> str | None:
        raise NotImplementedError

    def _list(self, values: Sequence[str] | Sequence[int] | None) -> Any:
        raise NotImplementedError

    def known_started(self, run_id: str) -> bool:
        return run_id in self._started

    def remember_started(self, run_ids: Sequence[str]) -> None:
        """Called after a commit that saw these runs started."""
        with self._cache_lock:
            for run_id in run_ids:
                self._started[run_id] = None
            while len(self._started) > 4096:
                self._started.popitem(last=False)

    def context(self, tx: Tx, run_id: str) -> RunContext:
        context = self._runs.get(run_id)
        if context is None:
            context = self.load_contexts(tx, [run_id])[run_id]
        return context

    def load_contexts(self, tx: Tx, run_ids: list[str]) -> dict[str, RunContext]:
        """Contexts of these runs, read in one query and cached (they never change).

        What a transaction reads is cached for everyone only once it commits: a
        run created in a transaction that rolls back leaves nothing behind.
        """
        local: dict[str, RunContext] = tx.__dict__.setdefault("contexts", {})
        missing = [r for r in run_ids if r not in self._runs and r not in local]
        rows = tx.all("run_contexts", ids=self._list(missing)) if missing else []
        loaded = {self._id(row["id"]) or "": self._context_of(row) for row in rows}
        if loaded:
            local.update(loaded)
            tx.after_commit(lambda: self._remember_contexts(loaded))
        found = {}
        for run_id in run_ids:
            context = self._runs.get(run_id) or local.get(run_id)
            if context is not None:
                found[run_id] = context
        absent = [r for r in run_ids if r not in found]
        if absent:
            raise RunNotFoundError(f"no run with id {absent[0]!r}")
        return found

    def seed_context(
        self, tx: Tx, row: dict[str, Any], task_defaults: Mapping[str, TaskDefaults] | None = None
    ) -> None:
        """The context of a run this transaction creates, from what it wrote (``row`` as
        ``run_contexts`` reads it back), so that nothing reads the run back to know it.
        ``task_defaults`` are the run's as written, when at hand: not read from their
        JSON again."""
        context = self._context_of(row, task_defaults)
        run_id = context.run["id"]
        tx.__dict__.setdefault("contexts", {})[run_id] = context
        tx.after_commit(lambda: self._remember_contexts({run_id: context}))

    def _context_of(
        self, row: dict[str, Any], task_defaults: Mapping[str, TaskDefaults] | None = None
    ) -> RunContext:
        run_id = self._id(row["id"]) or ""
        created = self._ts(row["created_at"])
        # runs created before logical dates were kept read their created time
        logical = self._ts(row["logical_date"]) or created
        return RunContext(
            spec_hash=row["spec_hash"],
            params=self._json(row["params"]),
            run={
                "id": run_id,
                "workflow": row["workflow_name"],
                "name": row["workflow_name"],
                "version": row["workflow_version"],
                "created_by": row["created_by"],
                "correlation_id": row["correlation_id"],
                "tags": self._json(row["tags"]),
                "created_at": created.isoformat() if created else None,
                "logical_date": logical.isoformat() if logical else None,
                "parent_run_id": self._id(row["parent_run_id"]),
            },
            root_run_id=self._id(row["root_run_id"]) or run_id,
            parent_run_id=self._id(row["parent_run_id"]),
            parent_step=row["parent_step"],
            task_defaults=dict(task_defaults)
            if task_defaults is not None
            else {
                name: TaskDefaults.from_json(value)
                for name, value in (self._json(row["task_defaults"]) or {}).items()
            },
            attempt=int(row.get("attempt") or 1),
        )

    def check_attempt(self, tx: Tx, run_id: str, attempt: int | None) -> None:
        """Forget the run's cached context if it was read at another attempt of the run
        (one set going again since, perhaps with new params or on another spec)."""
        if attempt is None:
            return
        cached = self._runs.get(run_id)
        if cached is not None and cached.attempt != int(attempt):
            with self._cache_lock:
                self._runs.pop(run_id, None)
        local = tx.__dict__.get("contexts", {})
        seen = local.get(run_id)
        if seen is not None and seen.attempt != int(attempt):
            del local[run_id]

    def forget_context(self, run_id: str) -> None:
        """Drop the run's cached context (an operation changed it)."""
        with self._cache_lock:
            self._runs.pop(run_id, None)

    def _remember_contexts(self, loaded: dict[str, RunContext]) -> None:
        with self._cache_lock:
            self._runs.update(loaded)
            while len(self._runs) > 4096:
                self._runs.popitem(last=False)

    def shards(self, tx: Tx, run_id: str, scope: str) -> int:
        """How many counter shards a scope has (fixed when it opened, so cached, for the
        run's attempt: a scope rerun opens again, perhaps with another number)."""
        attempt = self.context(tx, run_id).attempt
        known = self._shards.get((run_id, scope, attempt))
        if known is not None:
            return known
        row = tx.one("counter_shards", run_id=run_id, scope=scope)
        shards = int(row["shards"]) if row is not None else 1
        self.remember_shards(run_id, scope, shards, attempt)
        return shards

    def remember_shards(self, run_id: str, scope: str, shards: int, attempt: int) -> None:
        with self._cache_lock:
            self._shards[(run_id, scope, attempt)] = shards
            while len(self._shards) > 65536:
                self._shards.popitem(last=False)

    def known_defaults(self, tx: Tx, graph: Graph) -> dict[str, TaskDefaults]:
        """Task defaults recorded by the workers that have the code (this process has none)."""
        names = sorted({s.task for s in graph.spec.task_calls() if s.task})
        now = time.monotonic()
        fresh = {n: d for n, (d, at) in self._defaults.items() if n in names and now - at < 30}
        missing = [n for n in names if n not in fresh]
        if missing:
            for row in tx.all("task_defaults", tasks=self._list(missing)):
                defaults = self._defaults_of(row)
                fresh[row["task"]] = defaults
                with self._cache_lock:
                    self._defaults[row["task"]] = (defaults, now)
        return fresh

    def run_defaults(self, tx: Tx, run_id: str, graph: Graph) -> dict[str, TaskDefaults]:
        """The defaults of the tasks ``graph`` calls, for instances of this run created now:
        as the run's starter resolved them, else as workers recorded them."""
        started_with = self.context(tx, run_id).task_defaults
        if all(s.task in started_with for s in graph.spec.task_calls() if s.task):
            return started_with
        return {**self.known_defaults(tx, graph), **started_with}

    def recorded_task_defaults(self, tasks: Sequence[str]) -> dict[str, TaskDefaults]:
        if not tasks:
            return {}
        with self._transaction(write=False) as tx:
            rows = tx.all("task_defaults", tasks=self._list(list(tasks)))
        return {row["task"]: self._defaults_of(row) for row in rows}

    def _defaults_of(self, row: dict[str, Any]) -> TaskDefaults:
        """A ``task_defaults`` row as the defaults it records."""
        return TaskDefaults(
            retry=RetryPolicy.model_validate(self._json(row["retry"])),
            timeout=row["timeout"],
            queue=row["queue"],
            priority=row["priority"],
            max_lost_attempts=row["max_lost"],
            schedule_to_start_timeout=row["schedule_timeout"],
            heartbeat_timeout=row["heartbeat_timeout"],
        )

    def register_task_defaults(self, defaults: Mapping[str, TaskDefaults]) -> None:
        """Record the defaults of the tasks this process has, for processes without the code."""
        if not defaults:
            return
        with self._transaction() as tx:
            tx.many(
                "upsert_task_defaults",
                [
                    {
                        "task": name,
                        "retry": d.retry.model_dump_json(),
                        "timeout": d.timeout,
                        "queue": d.queue,
                        "priority": d.priority,
                        "max_lost": d.max_lost_attempts,
                        "schedule_timeout": d.schedule_to_start_timeout,
                        "heartbeat_timeout": d.heartbeat_timeout,
                        "now": self.clock.now(),
                    }
                    for name, d in sorted(defaults.items())
                ],
            )
