"""The storage seam: the :class:`Store` contract and the data that crosses it.

Every backend meets :class:`Store` (one conformance suite checks them all).
:class:`~legato.store.sql.SQLStore` implements it once over named queries;
the SQLite and PostgreSQL stores supply only connections, transactions, the
clock and value conversion.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from legato.config import Secrets
from legato.engine.clock import Clock
from legato.engine.planner import NewInstance, TaskDefaults
from legato.model.definitions import Definition, DeployStatus
from legato.model.logs import LogLine
from legato.model.retention import PruneResult, Retention
from legato.model.runs import Event, Run, StepError
from legato.model.search import Order, RunFilter, RunPage
from legato.model.spec import RetryPolicy, WorkflowSpec
from legato.model.states import RunStatus

__all__ = [
    "AttemptFailure",
    "AttemptRef",
    "ClaimRequest",
    "ClaimedStep",
    "LeaseRenewal",
    "LogEntry",
    "NewDefinition",
    "NewRun",
    "Pending",
    "ProgressReport",
    "ReportOutcome",
    "RunKind",
    "StepResult",
    "Store",
    "TrackedStatus",
    "Tx",
    "WorkerInfo",
    "new_run_id",
]


def new_run_id() -> str:
    """A UUIDv7: time-ordered, so new runs land at the end of the index."""
    ms = int(datetime.now(UTC).timestamp() * 1000)
    rand = uuid.uuid4().int & ((1 << 74) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


#: what drives a run: its steps, one task call, or its creator outside legato
RunKind = Literal["workflow", "task", "external"]


@dataclass(frozen=True)
class NewRun:
    """Everything :meth:`Store.create_run` writes, decided before the transaction."""

    spec: WorkflowSpec
    params: dict[str, Any]
    #: the run's top-level instances (``plan_new_run``)
    steps: list[NewInstance]
    tags: dict[str, str] = field(default_factory=dict)
    created_by: str | None = None
    correlation_id: str | None = None
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    #: the key of the parent run's step this run is the sub-workflow of
    parent_step: str | None = None
    root_run_id: str | None = None
    #: the defaults of every task the spec calls, as the starter resolved them: kept
    #: with the run for the steps it creates later
    task_defaults: Mapping[str, TaskDefaults] = field(default_factory=dict)
    #: the time the run is for (``run.logical_date``); ``None``: its created time
    logical_date: datetime | None = None
    run_id: str = field(default_factory=new_run_id)
    #: ``workflow`` (driven by its steps), ``task`` (a standalone task call) or
    #: ``external`` (tracked from outside: no steps, its status set by its creator)
    kind: RunKind = "workflow"
    #: the hash an external run's creator gave for its definition
    workflow_hash: str | None = None
    #: other specs the run may start by name (its failure handler, found in a definition
    #: file), stored with it so that the transaction ending it finds them
    specs: tuple[WorkflowSpec, ...] = ()


@dataclass(frozen=True)
class TrackedStatus:
    """A status an external run's creator reports, with what comes with it.

    ``None`` leaves a field as it is. Times are aware datetimes.
    """

    status: RunStatus
    outputs: dict[str, Any] | None = None
    error: StepError | None = None
    #: the error's fields beyond type, message and traceback, kept with it
    error_details: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    task_count: int | None = None
    actor: str | None = None


@dataclass(frozen=True)
class NewDefinition:
    """A workflow version to deploy, with who deploys it and from where."""

    spec: WorkflowSpec
    source: str | None = None
    deployed_by: str | None = None


@dataclass(frozen=True)
class ClaimRequest:
    worker_id: str
    #: queues served; ``None`` means every queue (only with ``root_run_id``)
    queues: tuple[str, ...] | None
    tasks: tuple[str, ...]
    limit: int
    lease: float
    #: only steps of this run tree (an embedded ``legato.run``)
    root_run_id: str | None = None
    #: also reclaim expired leases and fire due timers in this transaction
    sweep: bool = False
    #: fire due timers (a sleep's end, a signal's timeout) without a whole sweep:
    #: the claimer knows one of them is due
    timers: bool = False
    sweep_limit: int = 100
    #: the defaults of the claimer's tasks, for steps of runs started without the code
    defaults: Mapping[str, TaskDefaults] = field(default_factory=dict)
    #: the secrets the claimer lends the steps it claims (``secrets.NAME`` in inputs)
    secrets: Secrets = field(default_factory=Secrets)
    #: the claimer's tasks that take a context: their steps get their map item read
    context_tasks: frozenset[str] = frozenset()
    #: the attempts the claimer runs, when a transaction of its failed as it committed:
    #: any other attempt the database says it holds is handed to it again
    #: (``ReportOutcome.adopted``); None, nothing to look for
    adopt: tuple[int, ...] | None = None


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
    #: set when the call cannot be made (inputs unresolvable, a stored policy
    #: unreadable); the attempt fails at once, without spending retries
    resolve_error: StepError | None = None
    #: the inputs that could not be resolved, by name (``kwargs.x``, ``args[0]``)
    input_errors: dict[str, str] = field(default_factory=dict)
    #: the call as it is recorded when that differs from ``args``/``kwargs``: a call
    #: reading secrets is recorded with each one read as ``***``
    recorded: dict[str, Any] | None = None
    #: the values of the secrets the call reads: never recorded (errors conceal them)
    hidden: tuple[str, ...] = field(default=(), repr=False)
    #: the item's index in the nearest map around it (or its own, for a map's item)
    index: int | None = None
    #: the value of that item, when the claimer's task takes a context
    item: Any = None
    #: the iteration of the nearest loop around it
    iteration: int | None = None
    #: how long the task may go without ``ctx.heartbeat()`` before the attempt times out
    heartbeat_timeout: float | None = None

    @property
    def label(self) -> str:
        return f"{self.step_id} (run {self.run_id}, attempt {self.attempt})"

    @property
    def ref(self) -> AttemptRef:
        return AttemptRef(self.step_run_id, self.run_id, self.step_id, self.attempt)


@dataclass(frozen=True)
class AttemptRef:
    """One attempt of one step run: the key a worker tracks it by."""

    step_run_id: int
    run_id: str
    step_id: str
    attempt: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.step_run_id, self.attempt)


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
    #: the attempt ended after its worker was asked to stop it (its run cancelled,
    #: or paused with ``stop_now``): it is recorded cancelled if its run has ended,
    #: else goes back to the queue (a failure) or completes (a value)
    stopped: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return (self.step_run_id, self.attempt)


@dataclass(frozen=True)
class ProgressReport:
    """What a running task last reported through its context, as JSON text
    (``None``: nothing new of that kind)."""

    progress: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class LogEntry:
    """One line a task wrote during an attempt, captured by its worker and written by
    its next heartbeat or report (``at``: the worker's time, in epoch seconds)."""

    step_run_id: int
    attempt: int
    seq: int
    at: float
    level: str
    logger: str | None
    message: str


@dataclass(frozen=True)
class LeaseRenewal:
    """What a heartbeat renewed, and what it learned."""

    #: leases renewed (attempts this worker still holds)
    renewed: int
    #: step runs whose attempts their worker is asked to stop (run cancelled or paused now)
    stop_requested: frozenset[int] = frozenset()


@dataclass(frozen=True)
class AttemptFailure:
    """A failed or lost attempt as one transaction decided it, for the worker's log."""

    run_id: str
    step_id: str
    attempt: int
    error: StepError
    #: seconds until it runs again; ``None`` when the step failed for good
    retry_in: float | None
    #: the attempt's worker was lost (lease expired), not the task failing
    lost: bool = False


@dataclass
class ReportOutcome:
    accepted: int = 0
    #: results refused because their attempt was no longer current
    stale: list[StepResult] = field(default_factory=list)
    #: runs that finished in this transaction, with their new status
    finished_runs: dict[str, RunStatus] = field(default_factory=dict)
    claimed: list[ClaimedStep] = field(default_factory=list)
    #: attempts the database says the claimer holds that it did not know of (a claim
    #: committed as its connection was cut): their leases renewed, to run as they are
    adopted: list[ClaimedStep] = field(default_factory=list)
    reclaimed: int = 0
    #: attempts handed back to the queue
    released: int = 0
    #: every failed or lost attempt this transaction recorded
    failures: list[AttemptFailure] = field(default_factory=list)
    #: seconds until the soonest retry this transaction scheduled with a delay, so
    #: the reporting worker can wake for it instead of waiting for its next poll
    next_retry_in: float | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as it announces itself: what it serves, and until when it counts as alive."""

    id: str
    host: str
    pid: int
    #: ``None``: every queue (a worker limited to one run tree)
    queues: tuple[str, ...] | None
    tasks: tuple[str, ...]
    concurrency: int
    root_run_id: str | None = None
    started_at: datetime | None = None
    last_seen_at: datetime | None = None
    expires_at: datetime | None = None
    #: attempts it is running now (as the database records them)
    running: int = 0

    def serves(self, task: str, queue: str, root_run_id: str | None) -> bool:
        if task not in self.tasks:
            return False
        if self.queues is not None and queue not in self.queues:
            return False
        return self.root_run_id is None or self.root_run_id == root_run_id


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
    def create_runs(self, news: Sequence[NewRun]) -> list[tuple[str, bool]]:
        """:meth:`create_run` for many runs in one transaction: all stored or none.

        Each gets ``(run_id, True)``, or ``(existing_id, False)`` for a repeated
        idempotency key (one repeated within ``news`` too); a key that asks for
        another workflow or other params raises
        :class:`~legato.errors.IdempotencyConflictError` and stores nothing.
        """

    @abc.abstractmethod
    def create_run(self, new: NewRun, *, conn: Any = None) -> tuple[str, bool]:
        """Atomically store the spec, the run, its steps (roots queued) and their events.

        Returns ``(run_id, True)``, or ``(existing_id, False)`` when a run with the
        same idempotency key, workflow and params exists; then nothing is written.
        The same key with another workflow or other params raises
        :class:`~legato.errors.IdempotencyConflictError`. An ``external`` run gets
        no steps. A run linked to a parent run but to no step of it (a task
        spawned into an external run) needs that parent external and unfinished,
        held locked while the run is stored. With ``conn`` (the caller's own
        connection to this database) the writes join the caller's transaction:
        committed or rolled back with it.
        """

    @abc.abstractmethod
    def set_tracked_status(self, run_id: str, change: TrackedStatus, *, conn: Any = None) -> None:
        """Set an external run's status (and result, error, times, task count) as its
        creator reports it, through the transition table. A run driven by its steps,
        a move the table does not allow, or any change to a finished run raises
        :class:`~legato.errors.ConflictError`; failing or cancelling the run cancels
        the task runs spawned into it that are not finished. ``conn`` as for
        :meth:`create_run`.
        """

    @abc.abstractmethod
    def get_run(self, run_id: str, *, with_steps: bool = True) -> Run:
        """The run with its steps in workflow order; raises RunNotFoundError."""

    @abc.abstractmethod
    def find_run_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Ids of runs starting with ``prefix`` (hex digits and dashes), at most ``limit``."""

    @abc.abstractmethod
    def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[Run]:
        """Runs, newest first, without their steps."""

    @abc.abstractmethod
    def search_runs(
        self,
        where: RunFilter,
        *,
        order: Order = "newest",
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Up to ``limit`` runs matching every filter of ``where``, newest (or oldest)
        first by start time, without their steps; after ``cursor`` (the ``next_cursor``
        of the page before) if given. The next page starts after this one's last run,
        so runs started meanwhile never shift it. A cursor this store did not
        return raises :class:`~legato.errors.ParamError`.
        """

    @abc.abstractmethod
    def prune_runs(
        self, rule: Retention, *, dry_run: bool = False, stop: Callable[[], bool] | None = None
    ) -> PruneResult:
        """Delete the finished run trees ``rule`` selects, in transactions of at most
        ``rule.batch_size`` trees: each top-level run with its child runs, steps, events,
        signals and counters. A tree holding a run that has not finished is left (and
        listed in ``skipped``); so is a run another transaction holds. ``dry_run`` counts
        what would be deleted and deletes nothing; ``stop()`` true ends it between batches.
        """

    @abc.abstractmethod
    def claim_turn(self, name: str, every: float) -> bool:
        """Whether the caller takes the periodic task ``name``'s turn: of any number of
        callers, in any processes, one gets it per ``every`` seconds (store clock)."""

    @abc.abstractmethod
    def run_events(self, run_id: str) -> list[Event]:
        """The run's history, oldest first."""

    @abc.abstractmethod
    def run_logs(
        self,
        run_id: str,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        after: int | None = None,
        limit: int = 1000,
    ) -> list[LogLine]:
        """Up to ``limit`` log lines of the run's attempts (of one step, one attempt),
        in the order they were stored, those with an id above ``after`` only; raises
        :class:`~legato.errors.RunNotFoundError` for an unknown run and
        :class:`~legato.errors.ParamError` for a step it does not have."""

    @abc.abstractmethod
    def get_spec(self, spec_hash: str) -> WorkflowSpec:
        """The stored spec with that content hash."""

    @abc.abstractmethod
    def deploy_all(self, definitions: Sequence[NewDefinition]) -> list[DeployStatus]:
        """Deploy every definition in one transaction: all are stored or none is.

        Each returns ``"created"``, or ``"unchanged"`` when its name, version and
        content hash are deployed already (then nothing about it is written, not
        even who deployed it again). A name and version deployed with another
        content hash raise :class:`~legato.errors.DefinitionConflictError` and
        nothing of the call is stored: a deployed version never changes. Of two
        deploys of one name and version racing, exactly one is created; the
        other is unchanged or a conflict.
        """

    def deploy(
        self, spec: WorkflowSpec, *, source: str | None = None, deployed_by: str | None = None
    ) -> DeployStatus:
        """Deploy one workflow version (:meth:`deploy_all` of one)."""
        return self.deploy_all([NewDefinition(spec, source, deployed_by)])[0]

    @abc.abstractmethod
    def definitions(self, name: str | None = None) -> list[Definition]:
        """Deployed definitions (of the workflow ``name``, if given), by name, newest first."""

    @abc.abstractmethod
    def definition(self, name: str, version: str | None = None) -> WorkflowSpec:
        """The deployed spec of ``name`` at ``version``, or the newest deployed (the one
        deployed last); raises :class:`~legato.errors.WorkflowNotFoundError`."""

    @abc.abstractmethod
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
        """In one transaction: write progress, apply results, hand back attempts, sweep,
        claim, write log lines.

        A completed attempt records its output, queues each successor whose last
        dependency it was, and completes the run after its last step. A failed
        attempt is queued again after its backoff while attempts remain, else it
        fails the run and cancels the steps not yet started. A result whose
        attempt is not the current running one is returned in ``stale`` and
        changes nothing. ``release`` hands attempts of ``worker_id`` back to the
        queue without counting them as failed or lost. ``worker_id`` (else the
        claimer's) is the actor of the events the batch records, but for a
        result's own events, whose actor is the worker that held the attempt. A lease that expired
        counts against the step's lost-attempt budget, never its retries.
        Claimed steps are leased for ``claim.lease`` seconds; no step of a paused
        run is claimed, and no timer of one fires. ``progress`` (by step run)
        is written first, for the attempts still running. ``logs`` are written last
        (a line already stored, or of a step run that no longer exists, is skipped).
        """

    @abc.abstractmethod
    def extend_leases(
        self,
        worker_id: str,
        step_run_ids: Sequence[int],
        lease: float,
        *,
        progress: Mapping[int, ProgressReport] | None = None,
        logs: Sequence[LogEntry] = (),
    ) -> LeaseRenewal:
        """Extend the leases ``worker_id`` holds on these step runs, write what their
        tasks reported (``progress``) and logged (``logs``), and say which the worker is
        asked to stop.

        Only steps the worker knows it is running are renewed, so a claim whose
        commit succeeded but whose answer was lost lets its lease lapse. The
        worker's own registration (if any) is renewed too. Never waits for a lock:
        a row another transaction holds is renewed by the next heartbeat.
        """

    @abc.abstractmethod
    def signal(self, run_id: str, name: str, payload: Any, *, sent_by: str | None = None) -> str:
        """Send a signal: it completes the step waiting for it (returning its key), or is kept
        for the next step of the run to wait for it (returning ``"kept"``)."""

    @abc.abstractmethod
    def cancel(
        self,
        run_id: str,
        reason: str,
        *,
        actor: str | None = None,
        run_failure_handler: bool = False,
    ) -> None:
        """End an unfinished (pending, running or paused) run as cancelled: nothing new
        starts, its child runs are cancelled too, and the workers running its attempts
        are asked to stop them (:meth:`extend_leases` tells them); each is recorded
        cancelled when it stops. With ``run_failure_handler`` its workflow's failure
        handler starts in the same transaction. A finished run raises
        OperationRefusedError, an unknown one RunNotFoundError."""

    @abc.abstractmethod
    def pause(self, run_id: str, *, stop_now: bool = False, actor: str | None = None) -> None:
        """Atomically pause a pending or running run and its child runs: no step of them is
        claimed and no timer of them fires until :meth:`resume`; attempts running
        finish (and are recorded) unless ``stop_now`` asks them to stop, when they go
        back to the queue without spending retries. Any other status raises
        OperationRefusedError."""

    @abc.abstractmethod
    def resume(self, run_id: str, *, actor: str | None = None) -> None:
        """Atomically resume a paused run and its paused child runs; a run that is not
        paused, or whose parent run is paused, raises OperationRefusedError."""

    @abc.abstractmethod
    def retry(self, run_id: str, *, actor: str | None = None) -> list[str]:
        """Atomically set a failed or cancelled top-level run going from where it stopped:
        its failed and cancelled instances (and those skipped because of them) wait or
        queue again with the inputs they were resolved with, compounds run on with what
        they hold, completed instances keep their outputs. Returns the instances that
        run again; any other status raises OperationRefusedError."""

    @abc.abstractmethod
    def rerun(
        self,
        run_id: str,
        from_step: str,
        *,
        params: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> list[str]:
        """Atomically run an ended top-level run again from the instance ``from_step``: it
        and everything downstream of it, in its scope and the scopes around it, run
        afresh (inputs resolved again, with ``params`` merged into the run's). Refused
        (OperationRefusedError) for a run still going or with a step still running."""

    @abc.abstractmethod
    def restart(
        self, run_id: str, *, use_latest_version: bool = False, actor: str | None = None
    ) -> int:
        """Atomically start an ended top-level run again from the beginning: its steps
        anew, its events kept, its attempt number one more (returned); on the newest
        deployed (else stored) version of its workflow if ``use_latest_version``."""

    @abc.abstractmethod
    def skip(self, run_id: str, step: str, output: Any = None, *, actor: str | None = None) -> None:
        """Atomically mark a step completed with ``output`` and release its successors: a
        waiting, queued or suspended step of a going run (a child run it waits for is
        cancelled), or a failed step of a failed or cancelled run, which then goes on
        as :meth:`retry` does. Anything else raises OperationRefusedError."""

    @abc.abstractmethod
    def update_variables(
        self, run_id: str, values: Mapping[str, Any], *, actor: str | None = None
    ) -> dict[str, Any]:
        """Merge ``values`` into the run's variables; return them all."""

    @abc.abstractmethod
    def recorded_task_defaults(self, tasks: Sequence[str]) -> dict[str, TaskDefaults]:
        """The defaults workers recorded for these tasks (those known), by name."""

    @abc.abstractmethod
    def register_task_defaults(self, defaults: Mapping[str, TaskDefaults]) -> None:
        """Record task defaults for processes that start runs without the tasks' code."""

    @abc.abstractmethod
    def register_worker(self, info: WorkerInfo, lease: float) -> None:
        """Announce a worker and what it serves; it counts as alive for ``lease`` seconds."""

    @abc.abstractmethod
    def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker that stopped on purpose."""

    @abc.abstractmethod
    def live_workers(self) -> list[WorkerInfo]:
        """Workers whose registration has not expired."""

    @abc.abstractmethod
    def wait_for_work(self, timeout: float) -> bool:
        """Block until work may have been queued or ``timeout`` passes."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def claim_steps(self, claim: ClaimRequest) -> list[ClaimedStep]:
        return self.report_and_claim([], claim).claimed


class Pending:
    """A statement sent whose rows are read later (:meth:`Tx.send`)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows

    def rows(self) -> list[dict[str, Any]]:
        return self._rows

    def one(self) -> dict[str, Any] | None:
        rows = self.rows()
        return rows[0] if rows else None


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

    @abc.abstractmethod
    def insert_rows(self, query: str, rows: list[dict[str, Any]]) -> None:
        """Insert any number of rows in one statement that nothing waits on (on
        PostgreSQL it goes with the next statement answered, or with ``COMMIT``).

        The query is written for it per dialect: on PostgreSQL it reads the rows
        from one JSON array (``rows``); on SQLite it is the one-row ``VALUES``
        form, repeated for the rows (cheaper there than reading JSON)."""

    def send(self, query: str, /, **params: Any) -> Pending:
        """Send the statement now, read its rows later: on PostgreSQL it waits in the
        pipeline and shares a round trip with the next statement answered. Statements
        still run in the order sent."""
        return Pending(self.all(query, **params))

    @abc.abstractmethod
    def savepoint(self, name: str) -> None:
        """Set a savepoint (sent, not waited for, on PostgreSQL)."""

    @abc.abstractmethod
    def rollback_to(self, name: str) -> None:
        """Undo what the transaction did since the savepoint ``name``."""

    @abc.abstractmethod
    def select(self, statement: str, /, **params: Any) -> list[dict[str, Any]]:
        """Rows of a statement composed from checked pieces (a search), not a named query;
        its values are bound ``params``, and it is planned for them every time."""

    def __init__(self) -> None:
        self._unclaimed: set[tuple[str, str]] = set()
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transaction has committed (never if it rolls back).

        What a transaction learns may be kept in memory only through this, so
        a rollback can never leave memory disagreeing with the database.
        """
        self._after_commit.append(callback)

    def committed(self) -> None:
        """Called by the store after a successful commit."""
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def queued(self, run_id: str, step_id: str) -> None:
        """A step became claimable in this transaction."""
        self._unclaimed.add((run_id, step_id))

    def claimed(self, run_id: str, step_id: str) -> None:
        self._unclaimed.discard((run_id, step_id))

    @property
    def unclaimed(self) -> frozenset[tuple[str, str]]:
        """(run, step) queued in this transaction and not claimed in it."""
        return frozenset(self._unclaimed)

    @property
    def wakes_workers(self) -> bool:
        """Work queued here that this transaction did not claim itself: wake others."""
        return bool(self._unclaimed)
