""":class:`SQLStore`: the :class:`~legato.store.base.Store` contract over named queries.

The SQLite and PostgreSQL stores supply connections, transactions, the clock
and value conversion; everything else is here, once. Creating runs and
reading them live in this module; the worker's hot path (results, sweeps,
hand-backs, claims) is :mod:`legato.store.reporting`, operations on one run
(signals, variables, cancels) :mod:`legato.store.operations`, the caches
:mod:`legato.store.caches`, and turning rows into runs :mod:`legato.store.rows`.
"""

from __future__ import annotations

import abc
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from legato.engine.clock import Clock
from legato.engine.planner import TaskDefaults
from legato.errors import (
    IdempotencyConflictError,
    LegatoError,
    RunNotFoundError,
    StoreError,
    WorkflowNotFoundError,
)
from legato.model.definitions import Definition, DeployStatus
from legato.model.graph import Graph
from legato.model.logs import LogLine
from legato.model.retention import PruneResult, Retention
from legato.model.runs import HANDLER_TAG, Event, Run
from legato.model.search import Order, RunFilter, RunPage
from legato.model.spec import WorkflowSpec
from legato.model.states import RunStatus
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES, dumps, loads
from legato.store import definitions as _definitions
from legato.store import operations, retention, search, tracking
from legato.store.base import (
    AttemptRef,
    ClaimRequest,
    LeaseRenewal,
    LogEntry,
    NewDefinition,
    NewRun,
    ProgressReport,
    ReportOutcome,
    StepResult,
    Store,
    TrackedStatus,
    Tx,
    WorkerInfo,
)
from legato.store.caches import RunCaches, RunContext
from legato.store.rows import run_from_row

if TYPE_CHECKING:
    from legato.store.unit import Unit

__all__ = ["RunContext", "SQLStore", "TransactionRetry"]

T = TypeVar("T")

#: tries of a transaction that lost a lock race before its error is raised
_TRIES = 8


class TransactionRetry(StoreError):
    """The transaction found a run's row locked, or lost a deadlock: run it again.

    The unit has noted the runs it needed, and the next try locks them first.
    """


_UUID_TEMPLATE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
#: rows that only hold a scope (a map item with steps, a loop iteration): not counted as steps
_SCOPE_ROWS = ("item", "iteration")
#: statuses a step ends in: what ``steps_done`` counts
_FINISHED = ("completed", "skipped", "failed", "cancelled")


class SQLStore(RunCaches, Store):
    """:class:`Store` over named queries; subclasses supply the database."""

    dialect: str

    def __init__(self, *, clock: Clock | None = None, max_payload_bytes: int | None = None) -> None:
        self.clock = clock or Clock()
        self.max_payload_bytes = (
            DEFAULT_MAX_PAYLOAD_BYTES if max_payload_bytes is None else max_payload_bytes
        )
        self._graphs: OrderedDict[str, Graph] = OrderedDict()
        self._runs: OrderedDict[str, RunContext] = OrderedDict()
        self._shards: OrderedDict[tuple[str, str, int], int] = OrderedDict()
        self._defaults: dict[str, tuple[TaskDefaults, float]] = {}
        #: runs a committed transaction saw started (a run never becomes pending
        #: again), so claims need not mark them started once more
        self._started: OrderedDict[str, None] = OrderedDict()
        self._cache_lock = threading.Lock()  # workers in several threads may share a store
        #: named points inside transactions where tests interleave two of them
        self.checkpoints: dict[str, Callable[[], None]] = {}
        #: transactions run again after a lock race (PostgreSQL: NOWAIT, deadlock)
        self.conflict_retries = 0

    # -- dialect hooks --------------------------------------------------------

    @abc.abstractmethod
    def _transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        """One transaction; ``write=False`` promises only reads (no write lock on SQLite)."""

    @abc.abstractmethod
    def _joined(self, conn: Any) -> AbstractContextManager[Tx]:
        """The caller's transaction on its own connection ``conn`` to this database:
        the writes are kept apart by a savepoint (undone alone if they fail) and
        committed or rolled back with the caller's transaction, never here. A
        connection with no transaction open in autocommit mode gets one of its own,
        committed at the end. Memory learns nothing from it (its commit is unseen)."""

    def transaction_for(self, conn: Any = None) -> AbstractContextManager[Tx]:
        """A transaction of this store's own, or the caller's on ``conn`` (:meth:`_joined`)."""
        return self._transaction() if conn is None else self._joined(conn)

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

    def retrying(self, work: Callable[[set[str]], T]) -> T:
        """Run ``work(hints)`` (one transaction) until it does not lose a lock race.

        ``hints`` gathers the runs a try found locked; the next try takes them first.
        """
        hints: set[str] = set()
        for attempt in range(_TRIES):
            try:
                return work(hints)
            except TransactionRetry:
                self.conflict_retries += 1
                time.sleep(0.002 * (attempt + 1))
        return work(hints)

    def checkpoint(self, name: str) -> None:
        """Run the test hook registered for this point of a transaction, if any."""
        hook = self.checkpoints.get(name)
        if hook is not None:
            hook()

    # -- runs -----------------------------------------------------------------

    def create_run(self, new: NewRun, *, conn: Any = None) -> tuple[str, bool]:
        return self.retrying(lambda hints: self._create_run(new, hints, conn))

    def _create_run(self, new: NewRun, hints: set[str], conn: Any = None) -> tuple[str, bool]:
        from legato.store.unit import Unit

        with self.transaction_for(conn) as tx:
            if new.idempotency_key is not None:  # a repeat writes nothing, not even its spec
                existing = tx.one("run_by_idempotency_key", key=new.idempotency_key)
                if existing is not None:
                    return self._repeat_of(existing, new), False
            unit = Unit(self, tx, hints, actor=new.created_by)
            if new.parent_run_id is not None and new.parent_step is None:
                tracking.hold_parent(unit, new.parent_run_id)
            if not self._insert_run(unit, new):  # another transaction took the key since
                existing = tx.one("run_by_idempotency_key", key=new.idempotency_key)
                assert existing is not None
                return self._repeat_of(existing, new), False
            unit.flush_events()
        return new.run_id, True

    def create_runs(self, news: Sequence[NewRun]) -> list[tuple[str, bool]]:
        if not news:
            return []
        return self.retrying(lambda hints: self._create_runs(news, hints))

    def _create_runs(self, news: Sequence[NewRun], hints: set[str]) -> list[tuple[str, bool]]:
        """The batch's runs in one statement, their steps in another and their events
        in a third, whatever its size."""
        from legato.store.unit import Unit, _json_rows

        results: list[tuple[str, bool]] = []
        with self._transaction() as tx:
            unit = Unit(self, tx, hints, actor=news[0].created_by)
            #: idempotency key -> the run this batch started with it
            keyed: dict[str, NewRun] = {}
            #: the runs to insert, each with its place in the results
            fresh: list[tuple[int, NewRun]] = []
            for new in news:
                key = new.idempotency_key
                if key is not None:
                    earlier = keyed.get(key)
                    if earlier is not None:
                        results.append((self._repeat_in_batch(earlier, new), False))
                        continue
                    existing = tx.one("run_by_idempotency_key", key=key)
                    if existing is not None:
                        results.append((self._repeat_of(existing, new), False))
                        continue
                    keyed[key] = new
                fresh.append((len(results), new))
                results.append((new.run_id, True))
            specs = {s.content_hash: s for _, new in fresh for s in (new.spec, *new.specs)}
            # The batch's runs share their task defaults: their text is made once.
            texts: dict[int, str] = {}
            for _, new in fresh:
                if id(new.task_defaults) not in texts:
                    texts[id(new.task_defaults)] = self._defaults_text(new.task_defaults)
            for spec in specs.values():
                self._write_spec(tx, spec)
            rows = {
                self._id(row["id"]): row
                for row in tx.all(
                    "insert_runs",
                    rows=_json_rows(
                        [self._run_row(new, texts.get(id(new.task_defaults))) for _, new in fresh]
                    ),
                    now=self.clock.now(),
                )
            }
            for place, new in fresh:
                row = rows.get(new.run_id)
                if row is None:  # another transaction took its key since
                    existing = tx.one("run_by_idempotency_key", key=new.idempotency_key)
                    assert existing is not None
                    results[place] = (self._repeat_of(existing, new), False)
                    continue
                self._inserted(unit, new, row, later=True)
            unit.flush_events()
        return results

    def _repeat_in_batch(self, earlier: NewRun, new: NewRun) -> str:
        """A key given twice in one batch: the same run, if it asks for the same one."""
        if earlier.spec.name != new.spec.name or earlier.params != new.params:
            raise IdempotencyConflictError(
                f"idempotency key {new.idempotency_key!r} is given twice in one batch, for "
                "runs with other params; give each run its own key"
            )
        return earlier.run_id

    def create_child_run(
        self,
        unit: Unit,
        spec: WorkflowSpec,
        params: dict[str, Any],
        *,
        parent_run_id: str,
        parent_step: str,
        root_run_id: str,
        created_by: str | None,
    ) -> str:
        """A sub-workflow's run, started in the parent's transaction."""
        from legato.engine.planner import plan_new_run

        graph = spec.graph
        defaults = self.run_defaults(unit.tx, parent_run_id, graph)
        logical_date = self.context(unit.tx, parent_run_id).run["logical_date"]
        new = NewRun(
            spec=spec,
            params=params,
            steps=plan_new_run(graph, defaults),
            task_defaults=defaults,
            created_by=created_by,
            parent_run_id=parent_run_id,
            parent_step=parent_step,
            root_run_id=root_run_id,
            # a child run is for the same time as its parent
            logical_date=datetime.fromisoformat(logical_date) if logical_date else None,
        )
        self._insert_run(unit, new)
        return new.run_id

    def _insert_run(self, unit: Unit, new: NewRun, *, write_spec: bool = True) -> bool:
        """The spec (unless this transaction wrote it already), the run, its first instances
        and counters; then what is ready runs."""
        if write_spec:
            for written_spec in (new.spec, *new.specs):
                self._write_spec(unit.tx, written_spec)
        row = unit.tx.one("insert_run", **self._run_row(new), now=self.clock.now())
        if row is None:
            return False
        self._inserted(unit, new, row)
        return True

    def _write_spec(self, tx: Tx, spec: WorkflowSpec) -> None:
        tx.run(
            "insert_spec",
            hash=spec.content_hash,
            name=spec.name,
            version=spec.version,
            spec=spec.to_json(),
            now=self.clock.now(),
        )

    def _run_row(self, new: NewRun, defaults_text: str | None = None) -> dict[str, Any]:
        """The run's row as ``insert_run`` and ``insert_runs`` take it (``defaults_text``:
        its task defaults as text, when a batch made it once for its runs)."""
        spec = new.spec
        return {
            "id": new.run_id,
            "workflow_name": spec.name,
            "workflow_version": spec.version,
            "spec_hash": spec.content_hash,
            "created_by": new.created_by,
            "correlation_id": new.correlation_id,
            "parent_run_id": new.parent_run_id,
            "parent_step": new.parent_step,
            "root_run_id": new.root_run_id or new.run_id,
            "params": dumps(new.params),
            "tags": dumps(new.tags),
            "idempotency_key": new.idempotency_key,
            "task_defaults": defaults_text
            if defaults_text is not None
            else self._defaults_text(new.task_defaults),
            "logical_date": None if new.logical_date is None else new.logical_date.timestamp(),
            "kind": new.kind,
            "workflow_hash": new.workflow_hash,
        }

    @staticmethod
    def _defaults_text(defaults: Mapping[str, TaskDefaults]) -> str:
        return dumps({k: d.to_json() for k, d in sorted(defaults.items())})

    def _inserted(
        self, unit: Unit, new: NewRun, row: dict[str, Any], *, later: bool = False
    ) -> None:
        """What follows a run's row (``row`` as the insert returned it): its context
        known, its event, its first instances (``later``: written with the batch's)."""
        from legato.model.instances import Place

        spec = new.spec
        self.seed_context(
            unit.tx,
            {
                "id": new.run_id,
                "workflow_name": spec.name,
                "workflow_version": spec.version,
                "spec_hash": spec.content_hash,
                "created_by": new.created_by,
                "correlation_id": new.correlation_id,
                "parent_run_id": new.parent_run_id,
                "parent_step": new.parent_step,
                "root_run_id": new.root_run_id or new.run_id,
                "params": loads(dumps(new.params)),
                "tags": dict(new.tags),
                "task_defaults": None,
                "created_at": row["created_at"],
                "logical_date": row["logical_date"],
            },
            task_defaults=new.task_defaults,
        )
        with self._cache_lock:
            self._graphs.setdefault(spec.content_hash, spec.graph)
        unit.event(
            new.run_id,
            "run.created",
            actor=new.created_by,
            details={
                "workflow": spec.label,
                "hash": spec.content_hash,
                **(
                    {"parent_run": new.parent_run_id, "parent_step": new.parent_step}
                    if new.parent_run_id
                    else {}
                ),
                **({"kind": new.kind} if new.kind != "workflow" else {}),
                **({"workflow_hash": new.workflow_hash} if new.workflow_hash else {}),
            },
        )
        if new.kind != "external":  # a run tracked from outside has no steps to unfold
            unit.progress.open_scope(
                new.run_id, "", Place(), "", 0, rows=list(new.steps), later=later
            )

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
            handler = None
            if with_steps:
                steps = tx.all("get_steps", run_id=run_id)
                counted = [s for s in steps if s["kind"] not in _SCOPE_ROWS]
                total = len(counted)
                done = sum(1 for s in counted if s["status"] in _FINISHED)
                tasks = sum(1 for s in counted if s["kind"] == "task")
                if row["status"] in ("failed", "cancelled"):
                    found = tx.one("tagged_runs", key=HANDLER_TAG, value=run_id, limit=1)
                    handler = None if found is None else self._id(found["run_id"])
            else:
                steps = []
                total, done, tasks = self._counts(tx, [run_id]).get(run_id, (0, 0, 0))
        run = run_from_row(self, row, steps, total, done, tasks)
        return replace(run, failure_handler_run_id=handler) if handler else run

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
            counts = self._counts(tx, [self._id(row["id"]) or "" for row in rows])
        return [
            run_from_row(self, row, [], *counts.get(self._id(row["id"]) or "", (0, 0, 0)))
            for row in rows
        ]

    def prune_runs(
        self, rule: Retention, *, dry_run: bool = False, stop: Callable[[], bool] | None = None
    ) -> PruneResult:
        return retention.prune(self, rule, dry_run=dry_run, stop=stop)

    def claim_turn(self, name: str, every: float) -> bool:
        return retention.claim_turn(self, name, every)

    def search_runs(
        self,
        where: RunFilter,
        *,
        order: Order = "newest",
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        return search.search_runs(self, where, order=order, limit=limit, cursor=cursor)

    def _counts(self, tx: Tx, run_ids: list[str]) -> dict[str, tuple[int, int, int]]:
        """Steps (instances, not scope rows), those finished (in a final state) and those
        calling a task, by run."""
        if not run_ids:
            return {}
        rows = tx.all("step_counts", ids=self._list(run_ids))
        return {
            self._id(r["run_id"]) or "": (
                int(r["total"]),
                int(r["done"] or 0),
                int(r["tasks"] or 0),
            )
            for r in rows
        }

    def run_logs(
        self,
        run_id: str,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        after: int | None = None,
        limit: int = 1000,
    ) -> list[LogLine]:
        from legato.store.logs import read_logs

        run_id = self._check_run_id(run_id)
        return read_logs(self, run_id, step_id=step_id, attempt=attempt, after=after, limit=limit)

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
        progress: Mapping[int, ProgressReport] | None = None,
        logs: Sequence[LogEntry] = (),
    ) -> ReportOutcome:
        if release and worker_id is None:
            raise ValueError("releasing attempts needs the worker_id that holds them")
        return self.retrying(
            lambda hints: self._report(hints, results, claim, release, worker_id, progress, logs)
        )

    def _report(
        self,
        hints: set[str],
        results: Sequence[StepResult],
        claim: ClaimRequest | None,
        release: Sequence[AttemptRef],
        worker_id: str | None,
        progress: Mapping[int, ProgressReport] | None = None,
        logs: Sequence[LogEntry] = (),
    ) -> ReportOutcome:
        """One try; ``hints`` are runs to lock first (a try before found them locked)."""
        from legato.store.logs import write_logs
        from legato.store.reporting import Report

        with self._transaction() as tx:
            if progress:
                self.write_progress(tx, progress)
            outcome = Report(self, tx, hints).apply(results, claim, release, worker_id)
            if logs:
                write_logs(tx, logs)
            return outcome

    def extend_leases(
        self,
        worker_id: str,
        step_run_ids: Sequence[int],
        lease: float,
        *,
        progress: Mapping[int, ProgressReport] | None = None,
        logs: Sequence[LogEntry] = (),
    ) -> LeaseRenewal:
        from legato.store.logs import write_logs

        with self._transaction() as tx:
            tx.run("touch_worker", id=worker_id, lease=float(lease), now=self.clock.now())
            if progress:
                self.write_progress(tx, progress)
            rows = []
            if step_run_ids:
                rows = tx.all(
                    "extend_leases",
                    worker=worker_id,
                    ids=self._list(list(step_run_ids)),
                    lease=float(lease),
                    now=self.clock.now(),
                )
            if logs:
                write_logs(tx, logs)
            if not step_run_ids:
                return LeaseRenewal(0)
        return LeaseRenewal(len(rows), frozenset(int(r["id"]) for r in rows if r["stop_requested"]))

    def write_progress(self, tx: Tx, progress: Mapping[int, ProgressReport]) -> None:
        """What running tasks reported through their contexts, one statement for them all."""
        tx.many(
            "write_progress",
            [
                {
                    "id": step_run_id,
                    "progress": p.progress,
                    "details": p.details,
                    "now": self.clock.now(),
                }
                for step_run_id, p in sorted(progress.items())
            ],
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
                    running=int(row.get("running") or 0),
                )
            )
        return workers

    # -- deployed definitions (legato.store.definitions) ---------------------------------------

    def deploy_all(self, definitions: Sequence[NewDefinition]) -> list[DeployStatus]:
        return _definitions.deploy_all(self, definitions)

    def definitions(self, name: str | None = None) -> list[Definition]:
        return _definitions.definitions(self, name)

    def definition(self, name: str, version: str | None = None) -> WorkflowSpec:
        return _definitions.definition(self, name, version)

    def newest_spec(self, tx: Tx, name: str, version: str | None) -> WorkflowSpec:
        """The workflow ``name`` (at ``version``, if given) for a sub-workflow step: the
        newest deployed definition, else the newest spec a run stored."""
        row = tx.one("newest_spec", name=name, version=version)
        if row is None:
            which = f"{name}@{version}" if version else name
            raise WorkflowNotFoundError(
                f"no workflow {which!r} is stored: deploy it (legato deploy) or start it "
                "once so its spec is known"
            )
        return self.stored_spec(tx, row["spec"])

    def stored_spec(self, tx: Tx, text: Any) -> WorkflowSpec:
        """A spec as a query read it (JSON text), parsed once per content hash."""
        spec = WorkflowSpec.model_validate_json(
            text if isinstance(text, str | bytes) else dumps(text)
        )
        return self.graph(tx, spec.content_hash).spec

    # -- operations on runs (legato.store.operations) ------------------------------------------

    def signal(self, run_id: str, name: str, payload: Any, *, sent_by: str | None = None) -> str:
        return operations.signal(self, run_id, name, payload, sent_by=sent_by)

    def cancel(
        self,
        run_id: str,
        reason: str,
        *,
        actor: str | None = None,
        run_failure_handler: bool = False,
    ) -> None:
        operations.cancel(
            self, run_id, reason, actor=actor, run_failure_handler=run_failure_handler
        )

    def set_tracked_status(self, run_id: str, change: TrackedStatus, *, conn: Any = None) -> None:
        tracking.set_status(self, run_id, change, conn=conn)

    def pause(self, run_id: str, *, stop_now: bool = False, actor: str | None = None) -> None:
        operations.pause(self, run_id, stop_now=stop_now, actor=actor)

    def resume(self, run_id: str, *, actor: str | None = None) -> None:
        operations.resume(self, run_id, actor=actor)

    def retry(self, run_id: str, *, actor: str | None = None) -> list[str]:
        return operations.retry(self, run_id, actor=actor)

    def rerun(
        self,
        run_id: str,
        from_step: str,
        *,
        params: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> list[str]:
        return operations.rerun(self, run_id, from_step, params=params, actor=actor)

    def restart(
        self, run_id: str, *, use_latest_version: bool = False, actor: str | None = None
    ) -> int:
        return operations.restart(self, run_id, use_latest_version=use_latest_version, actor=actor)

    def skip(self, run_id: str, step: str, output: Any = None, *, actor: str | None = None) -> None:
        operations.skip(self, run_id, step, output, actor=actor)

    def update_variables(
        self, run_id: str, values: Mapping[str, Any], *, actor: str | None = None
    ) -> dict[str, Any]:
        return operations.update_variables(self, run_id, values, actor=actor)

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


def _fill(template: str, digit: str) -> str:
    return "".join("-" if c == "-" else digit for c in template)
