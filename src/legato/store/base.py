"""The storage seam: domain operations, each applied in one transaction.

:class:`Store` is the contract every backend meets (and one conformance suite
checks). :class:`SQLStore` implements it once over named queries; the SQLite
and PostgreSQL stores supply only connections, transactions, the clock and
value conversion. Decisions come from :mod:`legato.engine.planner` and
:mod:`legato.engine.retry`; this module only applies them.

Lock order inside a transaction (PostgreSQL): step rows of one run in
``run_id`` order, then their successors, then the run row once.
"""

from __future__ import annotations

import abc
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from legato.engine.clock import Clock
from legato.engine.planner import (
    NewStep,
    expression_context,
    resolve_call,
    resolve_outputs,
    run_status_after_completion,
)
from legato.engine.retry import RetryDecision, decide_retry
from legato.errors import LegatoError, RunNotFoundError
from legato.model.graph import Graph
from legato.model.runs import Attempt, Event, Run, StepError, StepRun
from legato.model.spec import RetryPolicy, StepSpec, WorkflowSpec
from legato.model.states import RunStatus, StepStatus
from legato.payload import DEFAULT_MAX_PAYLOAD_BYTES, dumps, loads, to_json

__all__ = [
    "ClaimRequest",
    "ClaimedStep",
    "NewRun",
    "ReportOutcome",
    "SQLStore",
    "StepResult",
    "Store",
    "new_run_id",
]


def new_run_id() -> str:
    """A UUIDv7: time-ordered, so new runs land at the end of the index."""
    ms = int(datetime.now(UTC).timestamp() * 1000)
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


@dataclass(frozen=True)
class NewRun:
    """Everything :meth:`Store.create_run` writes, decided before the transaction."""

    spec: WorkflowSpec
    params: dict[str, Any]
    steps: list[NewStep]
    tags: dict[str, str] = field(default_factory=dict)
    created_by: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    root_run_id: str | None = None
    run_id: str = field(default_factory=new_run_id)


@dataclass(frozen=True)
class ClaimRequest:
    worker_id: str
    queues: tuple[str, ...]
    tasks: tuple[str, ...]
    limit: int
    lease: float
    #: only steps of this run tree (an embedded ``legato.run``)
    root_run_id: str | None = None
    #: also reclaim expired leases in this transaction
    sweep: bool = False
    sweep_limit: int = 100


@dataclass(frozen=True)
class ClaimedStep:
    """A step attempt a worker now holds the lease for, with its call resolved."""

    step_run_id: int
    run_id: str
    step_id: str
    task: str
    attempt: int
    max_attempts: int
    retry: RetryPolicy
    timeout: float | None
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    #: set when the inputs could not be resolved; the attempt must be failed
    resolve_error: StepError | None = None

    @property
    def label(self) -> str:
        return f"{self.step_id} (run {self.run_id}, attempt {self.attempt})"


@dataclass(frozen=True)
class StepResult:
    """What a worker reports for an attempt; ``attempt`` is the fencing token."""

    step_run_id: int
    run_id: str
    step_id: str
    attempt: int
    ok: bool
    output_json: str | None = None
    inputs_json: str | None = None
    error: StepError | None = None
    retryable: bool = True


@dataclass
class ReportOutcome:
    accepted: int = 0
    #: results refused because their attempt was no longer current
    stale: list[StepResult] = field(default_factory=list)
    #: runs that finished in this transaction, with their new status
    finished_runs: dict[str, RunStatus] = field(default_factory=dict)
    claimed: list[ClaimedStep] = field(default_factory=list)
    reclaimed: int = 0
    #: seconds until the soonest retry this transaction scheduled with a delay, so
    #: the reporting worker can wake for it instead of waiting for its next poll
    next_retry_in: float | None = None


class Store(abc.ABC):
    """Domain operations over a database. Every method is one transaction."""

    clock: Clock
    url: str

    @abc.abstractmethod
    def migrate(self) -> list[int]:
        """Apply pending migrations (safe against concurrent callers); return those applied."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The newest migration applied, 0 for an empty database."""

    @abc.abstractmethod
    def create_run(self, new: NewRun) -> tuple[str, bool]:
        """Atomically store the spec, the run, its steps (roots queued) and their events.

        Returns ``(run_id, True)``, or ``(existing_id, False)`` when a run with the
        same idempotency key exists; then nothing is written.
        """

    @abc.abstractmethod
    def get_run(self, run_id: str, *, with_steps: bool = True) -> Run:
        """The run with its steps in workflow order; raises RunNotFoundError."""

    @abc.abstractmethod
    def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[Run]:
        """Runs, newest first, without their steps."""

    @abc.abstractmethod
    def run_events(self, run_id: str) -> list[Event]:
        """The run's history, oldest first."""

    @abc.abstractmethod
    def get_spec(self, spec_hash: str) -> WorkflowSpec:
        """The stored spec with that content hash."""

    @abc.abstractmethod
    def report_and_claim(
        self, results: list[StepResult], claim: ClaimRequest | None = None
    ) -> ReportOutcome:
        """In one transaction: apply results, sweep expired leases, claim new steps.

        A completed attempt records its output, queues each successor whose last
        dependency it was, and completes the run after its last step. A failed
        attempt is queued again after its backoff while attempts remain, else it
        fails the run and cancels the steps not yet started. A result whose
        attempt is not the current running one is returned in ``stale`` and
        changes nothing. Claimed steps are leased for ``claim.lease`` seconds.
        """

    @abc.abstractmethod
    def extend_leases(self, worker_id: str, step_run_ids: Sequence[int], lease: float) -> int:
        """Extend the leases ``worker_id`` holds on these step runs; return how many it holds.

        Only steps the worker knows it is running are renewed, so a claim whose
        commit succeeded but whose answer was lost lets its lease lapse.
        """

    @abc.abstractmethod
    def wait_for_work(self, timeout: float) -> bool:
        """Block until work may have been queued or ``timeout`` passes."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def claim_steps(self, claim: ClaimRequest) -> list[ClaimedStep]:
        return self.report_and_claim([], claim).claimed


@dataclass(frozen=True)
class _RunContext:
    spec_hash: str
    params: dict[str, Any]
    run: dict[str, Any]


class Tx(abc.ABC):
    """A transaction running named queries; rows come back as dicts."""

    @abc.abstractmethod
    def one(self, query: str, /, **params: Any) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def all(self, query: str, /, **params: Any) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def run(self, query: str, /, **params: Any) -> int:
        """Execute and return the number of rows changed."""

    @abc.abstractmethod
    def many(self, query: str, rows: list[dict[str, Any]]) -> None: ...

    def __init__(self) -> None:
        self._unclaimed: set[tuple[str, str]] = set()

    def queued(self, run_id: str, step_id: str) -> None:
        """A step became claimable in this transaction."""
        self._unclaimed.add((run_id, step_id))

    def claimed(self, run_id: str, step_id: str) -> None:
        self._unclaimed.discard((run_id, step_id))

    @property
    def wakes_workers(self) -> bool:
        """Work queued here that this transaction did not claim itself: wake others."""
        return bool(self._unclaimed)


class SQLStore(Store):
    """:class:`Store` over named queries; subclasses supply the database."""

    dialect: str

    def __init__(self, *, clock: Clock | None = None, max_payload_bytes: int | None = None) -> None:
        self.clock = clock or Clock()
        self.max_payload_bytes = (
            DEFAULT_MAX_PAYLOAD_BYTES if max_payload_bytes is None else max_payload_bytes
        )
        self._graphs: OrderedDict[str, Graph] = OrderedDict()
        self._runs: OrderedDict[str, _RunContext] = OrderedDict()
        self._cache_lock = threading.Lock()  # workers in several threads may share a store

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

    def _list(self, values: list[str] | list[int]) -> Any:
        """A list parameter (SQLite: JSON text; PostgreSQL: an array)."""
        return dumps(values)

    # -- runs -----------------------------------------------------------------

    def create_run(self, new: NewRun) -> tuple[str, bool]:
        spec = new.spec
        root = new.root_run_id or new.run_id
        with self._transaction() as tx:
            if new.idempotency_key is not None:  # a repeat writes nothing, not even its spec
                existing = tx.one("run_by_idempotency_key", key=new.idempotency_key)
                if existing is not None:
                    return self._id(existing["id"]) or "", False
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
            if row is None:
                existing = tx.one("run_by_idempotency_key", key=new.idempotency_key)
                assert existing is not None
                return self._id(existing["id"]) or "", False
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
                        "now": now,
                    }
                    for s in new.steps
                ],
            )
            events = [
                self._event(
                    new.run_id,
                    "run.created",
                    actor=new.created_by,
                    details={"workflow": spec.label, "hash": spec.content_hash},
                )
            ]
            events += [
                self._event(new.run_id, "step.queued", step_id=s.step_id)
                for s in new.steps
                if s.status is StepStatus.QUEUED
            ]
            tx.many("insert_event", events)
            for s in new.steps:
                if s.status is StepStatus.QUEUED:
                    tx.queued(new.run_id, s.step_id)
        return new.run_id, True

    def get_run(self, run_id: str, *, with_steps: bool = True) -> Run:
        run_id = self._check_run_id(run_id)
        with self._transaction(write=False) as tx:
            row = tx.one("get_run", id=run_id)
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r}")
            steps = tx.all("get_steps", run_id=run_id) if with_steps else []
        return self._run_from_row(row, steps)

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
        return self._graph(None, spec_hash).spec

    # -- the worker's hot path ------------------------------------------------

    def report_and_claim(
        self, results: list[StepResult], claim: ClaimRequest | None = None
    ) -> ReportOutcome:
        outcome = ReportOutcome()
        with self._transaction() as tx:
            events: list[dict[str, Any]] = []
            by_run: dict[str, list[StepResult]] = {}
            for result in results:
                by_run.setdefault(result.run_id, []).append(result)
            for run_id in sorted(by_run):
                self._apply_results(tx, run_id, by_run[run_id], events, outcome)
            if claim is not None:
                if claim.sweep:
                    outcome.reclaimed = self._sweep(tx, claim.sweep_limit, events, outcome)
                outcome.claimed = self._claim(tx, claim, events)
            if events:
                tx.many("insert_event", events)
        return outcome

    def extend_leases(self, worker_id: str, step_run_ids: Sequence[int], lease: float) -> int:
        if not step_run_ids:
            return 0
        with self._transaction() as tx:
            return tx.run(
                "extend_leases",
                worker=worker_id,
                ids=self._list(list(step_run_ids)),
                lease=float(lease),
                now=self.clock.now(),
            )

    def _apply_results(
        self,
        tx: Tx,
        run_id: str,
        results: list[StepResult],
        events: list[dict[str, Any]],
        outcome: ReportOutcome,
    ) -> None:
        completed = 0
        graph: Graph | None = None
        for result in sorted(results, key=lambda r: r.step_id):
            if not result.ok:
                if self._fail_attempt(tx, result, events, outcome):
                    outcome.accepted += 1
                else:
                    outcome.stale.append(result)
                continue
            changed = tx.run(
                "complete_step",
                id=result.step_run_id,
                attempt=result.attempt,
                output=result.output_json,
                inputs=result.inputs_json,
                now=self.clock.now(),
            )
            if not changed:
                outcome.stale.append(result)
                continue
            outcome.accepted += 1
            completed += 1
            events.append(
                self._event(
                    run_id, "step.completed", step_id=result.step_id, attempt=result.attempt
                )
            )
            graph = graph or self._graph(tx, self._context(tx, run_id).spec_hash)
            successors = graph.successors[result.step_id]
            if successors:
                rows = tx.all(
                    "release_successors",
                    run_id=run_id,
                    step_ids=self._list(list(successors)),
                    now=self.clock.now(),
                )
                for row in rows:
                    if row["status"] == StepStatus.QUEUED:
                        events.append(self._event(run_id, "step.queued", step_id=row["step_id"]))
                        tx.queued(run_id, row["step_id"])
        if completed:
            counts = tx.one("count_done", run_id=run_id, n=completed, now=self.clock.now())
            assert counts is not None
            active = counts["status"] in (RunStatus.RUNNING, RunStatus.PENDING)
            if active and run_status_after_completion(counts["steps_done"], counts["steps_total"]):
                graph = graph or self._graph(tx, self._context(tx, run_id).spec_hash)
                self._complete_run(tx, run_id, graph, events, outcome)

    def _complete_run(
        self,
        tx: Tx,
        run_id: str,
        graph: Graph,
        events: list[dict[str, Any]],
        outcome: ReportOutcome,
    ) -> None:
        context = self._context(tx, run_id)
        outputs_json: str | None = None
        error: StepError | None = None
        try:
            reads = self._outputs(tx, run_id, graph.output_reads)
            outputs = resolve_outputs(graph, expression_context(context.params, reads, context.run))
            _, outputs_json = to_json(outputs, what="run outputs", max_bytes=self.max_payload_bytes)
        except LegatoError as exc:
            error = StepError(type=type(exc).__name__, message=str(exc))
        if error is None:
            self._finish_run(
                tx, run_id, RunStatus.COMPLETED, events, outcome, outputs_json=outputs_json
            )
        else:
            self._finish_run(tx, run_id, RunStatus.FAILED, events, outcome, error=error)

    def _fail_attempt(
        self,
        tx: Tx,
        result: StepResult,
        events: list[dict[str, Any]],
        outcome: ReportOutcome,
        *,
        actor: str | None = None,
    ) -> bool:
        row = tx.one("running_step", id=result.step_run_id, attempt=result.attempt)
        if row is None:
            return False
        policy = RetryPolicy.model_validate(self._json(row["retry"]))
        error = result.error or StepError(type="Error", message="unknown failure")
        decision = decide_retry(policy, result.attempt, result.retryable)
        if decision.retry:  # never queue a step again in a run that has finished
            run = tx.one("get_run", id=result.run_id)
            if run is not None and RunStatus(run["status"]).finished:
                decision = RetryDecision(False)
        error_json = dumps(error.to_json())
        params = {
            "id": result.step_run_id,
            "attempt": result.attempt,
            "error": error_json,
            "inputs": result.inputs_json,
            "now": self.clock.now(),
        }
        details: dict[str, Any] = {"error": error.to_json()}
        if decision.retry:
            tx.run("retry_step", delay=float(decision.delay), **params)
            details["retry_in"] = round(decision.delay, 3)
            if decision.delay > 0:
                soonest = outcome.next_retry_in
                outcome.next_retry_in = min(decision.delay, soonest or decision.delay)
            events.append(
                self._event(
                    result.run_id,
                    "step.retrying",
                    step_id=result.step_id,
                    attempt=result.attempt,
                    actor=actor,
                    details=details,
                )
            )
            if decision.delay == 0:
                tx.queued(result.run_id, result.step_id)
            return True
        tx.run("fail_step", **params)
        events.append(
            self._event(
                result.run_id,
                "step.failed",
                step_id=result.step_id,
                attempt=result.attempt,
                actor=actor,
                details=details,
            )
        )
        run_error = StepError(
            type=error.type, message=error.message, traceback=error.traceback, step=result.step_id
        )
        self._finish_run(tx, result.run_id, RunStatus.FAILED, events, outcome, error=run_error)
        return True

    def _finish_run(
        self,
        tx: Tx,
        run_id: str,
        status: RunStatus,
        events: list[dict[str, Any]],
        outcome: ReportOutcome,
        *,
        outputs_json: str | None = None,
        error: StepError | None = None,
    ) -> None:
        changed = tx.one(
            "finish_run",
            run_id=run_id,
            status=status.value,
            outputs=outputs_json,
            error=None if error is None else dumps(error.to_json()),
            now=self.clock.now(),
        )
        if changed is None:
            return  # already finished: a step that was running when the run failed
        if status is not RunStatus.COMPLETED:
            for row in tx.all("cancel_unstarted", run_id=run_id, now=self.clock.now()):
                events.append(self._event(run_id, "step.cancelled", step_id=row["step_id"]))
        details = {"error": error.to_json()} if error else None
        events.append(self._event(run_id, f"run.{status.value}", details=details))
        outcome.finished_runs[run_id] = status
        with self._cache_lock:
            self._runs.pop(run_id, None)

    def _sweep(
        self, tx: Tx, limit: int, events: list[dict[str, Any]], outcome: ReportOutcome
    ) -> int:
        rows = tx.all("expired_steps", limit=limit, now=self.clock.now())
        for row in rows:
            result = StepResult(
                step_run_id=row["id"],
                run_id=self._id(row["run_id"]) or "",
                step_id=row["step_id"],
                attempt=row["attempt"],
                ok=False,
                error=StepError(
                    type="LeaseExpired",
                    message=f"worker {row['worker_id']} stopped renewing its lease "
                    "(killed or stuck); the attempt counts as failed",
                ),
                retryable=True,
            )
            self._fail_attempt(tx, result, events, outcome, actor="lease-sweeper")
        return len(rows)

    def _claim(
        self, tx: Tx, claim: ClaimRequest, events: list[dict[str, Any]]
    ) -> list[ClaimedStep]:
        if claim.limit <= 0 or not claim.tasks or not claim.queues:
            return []
        rows = tx.all(
            "claim_steps",
            worker=claim.worker_id,
            queues=self._list(list(claim.queues)),
            tasks=self._list(list(claim.tasks)),
            limit=claim.limit,
            lease=float(claim.lease),
            root=claim.root_run_id,
            now=self.clock.now(),
        )
        if not rows:
            return []
        rows.sort(key=lambda r: (-r["priority"], r["id"]))
        run_ids = list(dict.fromkeys(self._id(r["run_id"]) or "" for r in rows))
        fresh = [r for r in run_ids if r not in self._runs]
        if fresh:
            for row in tx.all("start_runs", ids=self._list(fresh), now=self.clock.now()):
                events.append(self._event(self._id(row["id"]) or "", "run.started"))
            self._load_contexts(tx, fresh)
        claimed = []
        outputs_cache: dict[str, dict[str, Any]] = {}
        for row in rows:
            run_id = self._id(row["run_id"]) or ""
            tx.claimed(run_id, row["step_id"])
            events.append(
                self._event(
                    run_id,
                    "step.started",
                    step_id=row["step_id"],
                    attempt=row["attempt"],
                    actor=claim.worker_id,
                )
            )
            claimed.append(self._claimed(tx, row, run_id, outputs_cache))
        return claimed

    def _claimed(
        self, tx: Tx, row: dict[str, Any], run_id: str, outputs_cache: dict[str, dict[str, Any]]
    ) -> ClaimedStep:
        context = self._context(tx, run_id)
        graph = self._graph(tx, context.spec_hash)
        step: StepSpec = graph.steps[row["step_id"]]
        resolve_error = None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        stored = self._json(row["inputs"])
        if stored is not None:  # an earlier attempt resolved them: call again the same way
            args, kwargs = stored.get("args", []), stored.get("kwargs", {})
        else:
            try:
                reads = graph.reads[step.id]
                outputs = outputs_cache.setdefault(run_id, {})
                missing = reads - outputs.keys()
                if missing:
                    outputs.update(self._outputs(tx, run_id, missing))
                ctx = expression_context(context.params, outputs, context.run)
                call_args, call_kwargs = resolve_call(step, ctx)
                # Resolved inputs are stored with the attempt, so they pass the JSON
                # gate too (``params.d.items()`` is no JSON); this also copies them.
                args, _ = to_json(call_args, what=f"step {step.id!r} args", max_bytes=None)
                kwargs, _ = to_json(call_kwargs, what=f"step {step.id!r} inputs", max_bytes=None)
            except LegatoError as exc:
                args, kwargs = [], {}
                resolve_error = StepError(type=type(exc).__name__, message=str(exc))
        return ClaimedStep(
            step_run_id=row["id"],
            run_id=run_id,
            step_id=row["step_id"],
            task=row["task"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            retry=RetryPolicy.model_validate(self._json(row["retry"])),
            timeout=row["timeout"],
            priority=row["priority"],
            args=args,
            kwargs=kwargs,
            resolve_error=resolve_error,
        )

    # -- caches and helpers ---------------------------------------------------

    def _outputs(self, tx: Tx, run_id: str, step_ids: frozenset[str] | set[str]) -> dict[str, Any]:
        if not step_ids:
            return {}
        rows = tx.all("step_outputs", run_id=run_id, step_ids=self._list(sorted(step_ids)))
        return {row["step_id"]: self._json(row["output"]) for row in rows}

    def _context(self, tx: Tx, run_id: str) -> _RunContext:
        context = self._runs.get(run_id)
        if context is None:
            context = self._load_contexts(tx, [run_id])[run_id]
        return context

    def _load_contexts(self, tx: Tx, run_ids: list[str]) -> dict[str, _RunContext]:
        loaded = {}
        for row in tx.all("run_contexts", ids=self._list(run_ids)):
            run_id = self._id(row["id"]) or ""
            created = self._ts(row["created_at"])
            loaded[run_id] = _RunContext(
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
        missing = [r for r in run_ids if r not in loaded]
        if missing:
            raise RunNotFoundError(f"no run with id {missing[0]!r}")
        with self._cache_lock:
            self._runs.update(loaded)
            while len(self._runs) > 4096:
                self._runs.popitem(last=False)
        return loaded

    def _graph(self, tx: Tx | None, spec_hash: str) -> Graph:
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

    def _event(
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
        if row["attempt"] and status not in (StepStatus.QUEUED, StepStatus.CANCELLED):
            attempts.append(
                Attempt(
                    number=row["attempt"],
                    status=status.value,
                    worker=row["worker_id"],
                    started_at=self._ts(row["started_at"]),
                    finished_at=self._ts(row["finished_at"]),
                    error=StepError.from_json(self._json(row["error"]))
                    if status is StepStatus.FAILED
                    else None,
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
            output=self._json(row["output"]),
            error=StepError.from_json(self._json(row["error"])),
            worker=row["worker_id"],
            queue=row["queue"],
            priority=row["priority"],
            queued_at=self._ts(row["queued_at"]),
            started_at=self._ts(row["started_at"]),
            finished_at=self._ts(row["finished_at"]),
            attempts=tuple(attempts),
        )


def _epoch(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), UTC)


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
