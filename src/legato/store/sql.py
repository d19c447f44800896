""":class:`SQLStore`: the :class:`~legato.store.base.Store` contract over named queries.

The SQLite and PostgreSQL stores supply connections, transactions, the clock
and value conversion; everything else is here, once. Creating runs and
reading them live in this module; the worker's hot path (results, sweeps,
hand-backs, claims) is :mod:`legato.store.reporting`.

Caches hold only what never changes once written (a spec by its hash, a
run's params and metadata) or what a committed transaction saw (a run has
started), filled after the commit, so a transaction that rolls back cannot
leave them disagreeing with the database.
"""

from __future__ import annotations

import abc
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from legato.engine.clock import Clock
from legato.errors import IdempotencyConflictError, LegatoError, RunNotFoundError
from legato.model.graph import Graph
from legato.model.runs import Attempt, Event, Run, StepError, StepRun
from legato.model.spec import WorkflowSpec
from legato.model.states import RunStatus, StepStatus
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES, dumps, loads
from legato.store.base import (
    AttemptRef,
    ClaimRequest,
    NewRun,
    ReportOutcome,
    StepResult,
    Store,
    Tx,
    WorkerInfo,
)

__all__ = ["RunContext", "SQLStore"]

_UUID_TEMPLATE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"


@dataclass(frozen=True)
class RunContext:
    """What expressions read about a run: fixed when the run is created."""

    spec_hash: str
    params: dict[str, Any]
    run: dict[str, Any]


class SQLStore(Store):
    """:class:`Store` over named queries; subclasses supply the database."""

    dialect: str

    def __init__(self, *, clock: Clock | None = None, max_payload_bytes: int | None = None) -> None:
        self.clock = clock or Clock()
        self.max_payload_bytes = (
            DEFAULT_MAX_PAYLOAD_BYTES if max_payload_bytes is None else max_payload_bytes
        )
        self._graphs: OrderedDict[str, Graph] = OrderedDict()
        self._runs: OrderedDict[str, RunContext] = OrderedDict()
        #: runs a committed transaction saw started (a run never becomes pending
        #: again), so claims need not mark them started once more
        self._started: OrderedDict[str, None] = OrderedDict()
        self._cache_lock = threading.Lock()  # workers in several threads may share a store
        #: named points inside transactions where tests interleave two of them
        self.checkpoints: dict[str, Callable[[], None]] = {}

    # -- dialect hooks --------------------------------------------------------

    @abc.abstractmethod
    def _transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        """One transaction; ``write=False`` promises only reads (no write lock on SQLite)."""

    @abc.abstractmethod
    def _ts(self, value: Any) -> datetime | None:
        """A stored timestamp as an aware UTC datetime."""

    def _json(self, value: Any) -> Any:
        """A stored JSON value as Python data."""
        return loads(value) if isinstance(value, str | bytes) else value

    def _id(self, value: Any) -> str | None:
        return None if value is None else str(value)

    def _list(self, values: Sequence[str] | Sequence[int] | None) -> Any:
        """A list parameter (SQLite: JSON text; PostgreSQL: an array)."""
        return None if values is None else dumps(list(values))

    def checkpoint(self, name: str) -> None:
        """Run the test hook registered for this point of a transaction, if any."""
        hook = self.checkpoints.get(name)
        if hook is not None:
            hook()

    # -- runs -----------------------------------------------------------------

    def create_run(self, new: NewRun) -> tuple[str, bool]:
        spec = new.spec
        root = new.root_run_id or new.run_id
        with self._transaction() as tx:
            if new.idempotency_key is not None:  # a repeat writes nothing, not even its spec
                existing = tx.one("run_by_idempotency_key", key=new.idempotency_key)
                if existing is not None:
                    return self._repeat_of(existing, new), False
            tx.run(
                "insert_spec",
                hash=spec.content_hash,
                name=spec.name,
                version=spec.version,
                spec=spec.to_json(),
                now=self.clock.now(),
            )
            row = tx.one(
                "insert_run",
                id=new.run_id,
                workflow_name=spec.name,
                workflow_version=spec.version,
                spec_hash=spec.content_hash,
                params=dumps(new.params),
                tags=dumps(new.tags),
                created_by=new.created_by,
                correlation_id=new.correlation_id,
                idempotency_key=new.idempotency_key,
                parent_run_id=new.parent_run_id,
                root_run_id=root,
                steps_total=len(new.steps),
                now=self.clock.now(),
            )
            if row is None:  # another transaction took the key since we looked
                existing = tx.one("run_by_idempotency_key", key=new.idempotency_key)
                assert existing is not None
                return self._repeat_of(existing, new), False
            now = self.clock.now()
            tx.many(
                "insert_step",
                [
                    {
                        "run_id": new.run_id,
                        "root_run_id": root,
                        "step_id": s.step_id,
                        "task": s.task,
                        "position": s.position,
                        "status": s.status.value,
                        "deps_remaining": s.deps_remaining,
                        "max_attempts": s.policy.retry.max_attempts,
                        "retry": s.policy.retry.model_dump_json(),
                        "timeout": s.policy.timeout,
                        "queue": s.policy.queue,
                        "priority": s.policy.priority,
                        "max_lost": s.policy.max_lost_attempts,
                        "now": now,
                    }
                    for s in new.steps
                ],
            )
            events = [
                self.event(
                    new.run_id,
                    "run.created",
                    actor=new.created_by,
                    details={"workflow": spec.label, "hash": spec.content_hash},
                )
            ]
            events += [
                self.event(new.run_id, "step.queued", step_id=s.step_id)
                for s in new.steps
                if s.status is StepStatus.QUEUED
            ]
            tx.many("insert_event", events)
            for s in new.steps:
                if s.status is StepStatus.QUEUED:
                    tx.queued(new.run_id, s.step_id)
        return new.run_id, True

    def _repeat_of(self, existing: dict[str, Any], new: NewRun) -> str:
        """The first run's id, if ``new`` asks for the same run; else a conflict."""
        run_id = self._id(existing["id"]) or ""
        if existing["workflow_name"] != new.spec.name:
            raise IdempotencyConflictError(
                f"idempotency key {new.idempotency_key!r} already started run {run_id} of "
                f"workflow {existing['workflow_name']!r}, not {new.spec.name!r}; "
                "use another key for another workflow"
            )
        if self._json(existing["params"]) != new.params:
            raise IdempotencyConflictError(
                f"idempotency key {new.idempotency_key!r} already started run {run_id} of "
                f"workflow {new.spec.name!r} with other params; use another key to start a "
                "run with these params"
            )
        return run_id

    def get_run(self, run_id: str, *, with_steps: bool = True) -> Run:
        run_id = self._check_run_id(run_id)
        with self._transaction(write=False) as tx:
            row = tx.one("get_run", id=run_id)
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r}")
            steps = tx.all("get_steps", run_id=run_id) if with_steps else []
        return self._run_from_row(row, steps)

    def find_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
        text = prefix.strip().lower()
        ok = len(text) <= len(_UUID_TEMPLATE) and all(
            (c == "-") == (t == "-") and (c == "-" or c in "0123456789abcdef")
            for c, t in zip(text, _UUID_TEMPLATE, strict=False)
        )
        if not ok or not text:
            return []
        low = text + _fill(_UUID_TEMPLATE[len(text) :], "0")
        high = text + _fill(_UUID_TEMPLATE[len(text) :], "f")
        with self._transaction(write=False) as tx:
            rows = tx.all("find_run_ids", low=low, high=high, limit=int(limit))
        return [self._id(row["id"]) or "" for row in rows]

    def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[Run]:
        if status is not None:
            status = RunStatus(status).value
        if int(limit) < 0:  # SQLite would read LIMIT -1 as no limit, PostgreSQL refuses it
            raise ValueError(f"limit must be 0 or more, got {limit}")
        with self._transaction(write=False) as tx:
            rows = tx.all("list_runs", status=status, workflow=workflow, limit=int(limit))
        return [self._run_from_row(row, []) for row in rows]

    def run_events(self, run_id: str) -> list[Event]:
        run_id = self._check_run_id(run_id)
        with self._transaction(write=False) as tx:
            if tx.one("get_run", id=run_id) is None:
                raise RunNotFoundError(f"no run with id {run_id!r}")
            rows = tx.all("run_events", run_id=run_id)
        return [
            Event(
                id=row["id"],
                run_id=self._id(row["run_id"]) or "",
                step_id=row["step_id"],
                attempt=row["attempt"],
                type=row["type"],
                at=self._ts(row["at"]),  # type: ignore[arg-type]
                actor=row["actor"],
                details=self._json(row["details"]),
            )
            for row in rows
        ]

    def get_spec(self, spec_hash: str) -> WorkflowSpec:
        return self.graph(None, spec_hash).spec

    # -- the worker's hot path ------------------------------------------------

    def report_and_claim(
        self,
        results: Sequence[StepResult],
        claim: ClaimRequest | None = None,
        *,
        release: Sequence[AttemptRef] = (),
        worker_id: str | None = None,
    ) -> ReportOutcome:
        from legato.store.reporting import Report

        if release and worker_id is None:
            raise ValueError("releasing attempts needs the worker_id that holds them")
        with self._transaction() as tx:
            return Report(self, tx).apply(results, claim, release, worker_id)

    def extend_leases(self, worker_id: str, step_run_ids: Sequence[int], lease: float) -> int:
        with self._transaction() as tx:
            tx.run("touch_worker", id=worker_id, lease=float(lease), now=self.clock.now())
            if not step_run_ids:
                return 0
            return tx.run(
                "extend_leases",
                worker=worker_id,
                ids=self._list(list(step_run_ids)),
                lease=float(lease),
                now=self.clock.now(),
            )

    # -- workers --------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, lease: float) -> None:
        with self._transaction() as tx:
            tx.run("prune_workers", now=self.clock.now())
            tx.run(
                "upsert_worker",
                id=info.id,
                host=info.host,
                pid=info.pid,
                queues=None if info.queues is None else dumps(list(info.queues)),
                tasks=dumps(list(info.tasks)),
                root_run_id=info.root_run_id,
                concurrency=info.concurrency,
                lease=float(lease),
                now=self.clock.now(),
            )

    def unregister_worker(self, worker_id: str) -> None:
        with self._transaction() as tx:
            tx.run("delete_worker", id=worker_id)

    def live_workers(self) -> list[WorkerInfo]:
        with self._transaction(write=False) as tx:
            rows = tx.all("live_workers", now=self.clock.now())
        workers = []
        for row in rows:
            queues = self._json(row["queues"])
            workers.append(
                WorkerInfo(
                    id=row["id"],
                    host=row["host"],
                    pid=row["pid"],
                    queues=None if queues is None else tuple(queues),
                    tasks=tuple(self._json(row["tasks"])),
                    concurrency=row["concurrency"],
                    root_run_id=self._id(row["root_run_id"]),
                    started_at=self._ts(row["started_at"]),
                    last_seen_at=self._ts(row["last_seen_at"]),
                    expires_at=self._ts(row["expires_at"]),
                )
            )
        return workers

    # -- caches and helpers ---------------------------------------------------

    def known_started(self, run_id: str) -> bool:
        return run_id in self._started

    def remember_started(self, run_ids: Sequence[str]) -> None:
        """Called after a commit that saw these runs started."""
        with self._cache_lock:
            for run_id in run_ids:
                self._started[run_id] = None
            while len(self._started) > 4096:
                self._started.popitem(last=False)

    def outputs(self, tx: Tx, run_id: str, step_ids: frozenset[str] | set[str]) -> dict[str, Any]:
        if not step_ids:
            return {}
        rows = tx.all("step_outputs", run_id=run_id, step_ids=self._list(sorted(step_ids)))
        return {row["step_id"]: self._json(row["output"]) for row in rows}

    def context(self, tx: Tx, run_id: str) -> RunContext:
        context = self._runs.get(run_id)
        if context is None:
            context = self.load_contexts(tx, [run_id])[run_id]
        return context

    def load_contexts(self, tx: Tx, run_ids: list[str]) -> dict[str, RunContext]:
        """Contexts of these runs, read in one query and cached (they never change)."""
        loaded = {}
        missing = [r for r in run_ids if r not in self._runs]
        rows = tx.all("run_contexts", ids=self._list(missing)) if missing else []
        for row in rows:
            run_id = self._id(row["id"]) or ""
            created = self._ts(row["created_at"])
            loaded[run_id] = RunContext(
                spec_hash=row["spec_hash"],
                params=self._json(row["params"]),
                run={
                    "id": run_id,
                    "workflow": row["workflow_name"],
                    "version": row["workflow_version"],
                    "created_by": row["created_by"],
                    "correlation_id": row["correlation_id"],
                    "tags": self._json(row["tags"]),
                    "created_at": created.isoformat() if created else None,
                },
            )
        with self._cache_lock:
            self._runs.update(loaded)
            while len(self._runs) > 4096:
                self._runs.popitem(last=False)
            found = {r: self._runs[r] for r in run_ids if r in self._runs}
        found.update({r: c for r, c in loaded.items() if r in run_ids})
        absent = [r for r in run_ids if r not in found]
        if absent:
            raise RunNotFoundError(f"no run with id {absent[0]!r}")
        return found

    def graph(self, tx: Tx | None, spec_hash: str) -> Graph:
        graph = self._graphs.get(spec_hash)
        if graph is not None:
            return graph
        if tx is None:
            with self._transaction(write=False) as own:
                row = own.one("get_spec", hash=spec_hash)
        else:
            row = tx.one("get_spec", hash=spec_hash)
        if row is None:
            raise LegatoError(f"no stored workflow spec with hash {spec_hash}")
        text = row["spec"]
        spec = WorkflowSpec.model_validate_json(
            text if isinstance(text, str | bytes) else dumps(text)
        )
        graph = spec.graph
        with self._cache_lock:
            self._graphs[spec_hash] = graph
            while len(self._graphs) > 256:
                self._graphs.popitem(last=False)
        return graph

    def event(
        self,
        run_id: str,
        type_: str,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        actor: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "step_id": step_id,
            "attempt": attempt,
            "type": type_,
            "actor": actor,
            "details": None if details is None else dumps(details),
            "now": self.clock.now(),
        }

    def _check_run_id(self, run_id: str) -> str:
        """The id in its stored form (SQLite compares text, PostgreSQL compares uuids)."""
        try:
            return str(uuid.UUID(str(run_id)))
        except ValueError:
            raise RunNotFoundError(f"no run with id {run_id!r} (not a run id)") from None

    def _run_from_row(self, row: dict[str, Any], step_rows: list[dict[str, Any]]) -> Run:
        return Run(
            id=self._id(row["id"]) or "",
            workflow=row["workflow_name"],
            version=row["workflow_version"],
            workflow_hash=row["spec_hash"],
            status=RunStatus(row["status"]),
            params=self._json(row["params"]),
            outputs=self._json(row["outputs"]),
            error=StepError.from_json(self._json(row["error"])),
            tags=self._json(row["tags"]),
            created_by=row["created_by"],
            correlation_id=row["correlation_id"],
            idempotency_key=row["idempotency_key"],
            parent_run_id=self._id(row["parent_run_id"]),
            created_at=self._ts(row["created_at"]),  # type: ignore[arg-type]
            started_at=self._ts(row["started_at"]),
            finished_at=self._ts(row["finished_at"]),
            steps_total=row["steps_total"],
            steps_done=row["steps_done"],
            variables=self._json(row["variables"]) or {},
            steps={s["step_id"]: self._step_from_row(s) for s in step_rows},
        )

    def _step_from_row(self, row: dict[str, Any]) -> StepRun:
        inputs = self._json(row["inputs"])
        attempts = [
            Attempt(
                number=h["attempt"],
                status=h["status"],
                worker=h.get("worker"),
                started_at=_epoch(h.get("started_at")),
                finished_at=_epoch(h.get("finished_at")),
                error=StepError.from_json(h.get("error")),
            )
            for h in self._json(row["history"]) or []
        ]
        status = StepStatus(row["status"])
        error = StepError.from_json(self._json(row["error"]))
        recorded = bool(attempts) and attempts[-1].number == row["attempt"]
        if (
            row["attempt"]
            and not recorded
            and status not in (StepStatus.QUEUED, StepStatus.WAITING)
        ):
            # The current attempt: its row holds it until a retry moves it to the history.
            lost = error is not None and error.type == "LeaseExpired"
            attempts.append(
                Attempt(
                    number=row["attempt"],
                    status="lost" if lost and status is not StepStatus.RUNNING else status.value,
                    worker=row["worker_id"],
                    started_at=self._ts(row["started_at"]),
                    finished_at=self._ts(row["finished_at"]),
                    error=error if status in (StepStatus.FAILED, StepStatus.CANCELLED) else None,
                )
            )
        return StepRun(
            step_id=row["step_id"],
            task=row["task"],
            status=status,
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            inputs=None if inputs is None else inputs.get("kwargs", {}),
            args=[] if inputs is None else inputs.get("args", []),
            input_errors={} if inputs is None else inputs.get("errors", {}),
            output=self._json(row["output"]),
            error=error,
            worker=row["worker_id"],
            queue=row["queue"],
            priority=row["priority"],
            queued_at=self._ts(row["queued_at"]),
            started_at=self._ts(row["started_at"]),
            finished_at=self._ts(row["finished_at"]),
            failures=row["failures"],
            lost=row["lost"],
            max_lost_attempts=row["max_lost"],
            attempts=tuple(attempts),
        )


def _fill(template: str, digit: str) -> str:
    return "".join("-" if c == "-" else digit for c in template)


def _epoch(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), UTC)
