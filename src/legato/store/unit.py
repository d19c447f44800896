"""One transaction that changes runs: what it holds, what it records, how runs end.

Every operation that moves a run on (a worker's batch, starting a run, a
signal, new variables) works through a :class:`Unit`: it keeps the events to
insert, the outcome to return and the run rows it holds, and it is where runs
finish (complete, fail, terminate, cancel), with their child runs and their
parent's step.

Lock order (PostgreSQL; SQLite runs one writer at a time): a transaction that
may change a run's own state holds the run's row (``FOR NO KEY UPDATE``)
before any of that run's step rows. Runs known up front (those of failed
attempts, hand-backs, sweeps, operations, and runs whose only top-level step
completes) are locked first, in id order. A
run found to need its lock later (its last step finished, a ``set_vars`` or
``terminate`` step became ready) is locked without waiting (``NOWAIT``); if
another transaction holds it, this one starts over with that run locked
first. Finishing a step needs no lock on its run, so the workers finishing a
map's items never queue on one row. Claims and heartbeats lock only rows
they can get without waiting (``SKIP LOCKED``). Inserting an event or a step
row takes ``KEY SHARE`` on its run row (the foreign key), which ``NO KEY
UPDATE`` never blocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from legato.engine.planner import NewInstance, shard_of, shards_for
from legato.errors import StoreError
from legato.model.runs import StepError
from legato.model.states import RunStatus
from legato.payload import dumps
from legato.store.base import Pending, ReportOutcome, Tx
from legato.store.handlers import start_failure_handler
from legato.store.limits import mark_new

if TYPE_CHECKING:
    from legato.store.progress import Progress
    from legato.store.sql import SQLStore

__all__ = ["Unit"]


class Unit:
    """A transaction's bookkeeping: locks held, events, outcome, the run's graph moves."""

    def __init__(
        self,
        store: SQLStore,
        tx: Tx,
        hints: set[str] | None = None,
        *,
        actor: str | None = None,
    ) -> None:
        from legato.store.progress import Progress

        self.store = store
        self.tx = tx
        #: who this transaction acts for (a worker's id, a user's name): the actor of
        #: every event it records that names no other
        self.actor = actor
        self.events: list[dict[str, Any]] = []
        #: runs an engine-decided step got under way, marked started when the unit ends
        self.beginning: set[str] = set()
        self.outcome = ReportOutcome()
        #: status of every run this transaction holds locked
        self.runs: dict[str, RunStatus] = {}
        #: the locked runs that are failing (a step failed; steps reacting to it still run)
        self.failing: set[str] = set()
        #: runs found to need their lock mid-way; a retry takes them first
        self.hints = hints if hints is not None else set()
        #: (run, scope, shard) -> instances finished, written when the unit settles
        self.pending_counts: dict[tuple[str, str, int], int] = {}
        #: runs finished by a write whose answer is checked before the unit ends
        self.unanswered: list[tuple[str, Pending]] = []
        #: top-level runs completed here (id, outputs JSON), written in one statement
        #: when the unit settles
        self.completing: list[tuple[str, str]] = []
        #: those sent, with the statement's answer to check
        self.completed: list[tuple[list[str], Pending]] = []
        #: step rows held back to be written in one statement (run, rows, instances)
        self.new_instances: list[tuple[str, list[dict[str, Any]], list[NewInstance]]] = []
        self.progress: Progress = Progress(self)

    # -- locks --------------------------------------------------------------------------

    def lock_runs(self, run_ids: Iterable[str], *, wait: bool = True) -> set[str]:
        """Lock these runs (in id order) before any of their steps; return those locked."""
        wanted = sorted({r for r in run_ids if r not in self.runs})
        if not wanted:
            return set()
        query = "lock_runs" if wait else "lock_runs_nowait"
        rows = self.tx.all(query, ids=self.store._list(wanted))
        locked = {self._took(row) for row in rows}
        started = [r for r in locked if self.runs[r] is not RunStatus.PENDING]
        if started:
            self.tx.after_commit(lambda: self.store.remember_started(started))
        return locked

    def lock_runs_now(self, run_ids: Iterable[str]) -> None:
        """:meth:`lock_run` for several runs at once, in one statement: the runs a
        batch's completions are about to finish. A run not found is left to
        :meth:`lock_run`, which says so."""
        wanted = sorted({r for r in run_ids if r not in self.runs})
        if len(wanted) < 2:
            return  # one is taken where it is needed
        self.hints.update(wanted)
        for row in self.tx.all("lock_runs_or_fail", ids=self.store._list(wanted)):
            self._took(row)

    def lock_run(self, run_id: str) -> RunStatus | None:
        """The run's row, locked now without waiting (the order's second way in).

        ``None`` when there is no such run. If another transaction holds it,
        the database refuses and the whole transaction runs again, this run
        taken first.
        """
        if run_id in self.runs:
            return self.runs[run_id]
        self.hints.add(run_id)
        row = self.tx.one("lock_run_or_fail", id=run_id)
        if row is None:
            return None
        return self.runs[self._took(row)]

    def _took(self, row: dict[str, Any]) -> str:
        """A run's row this transaction has locked: its status and failing known here
        (its cached context checked against its attempt). Returns its id."""
        run_id = self.store._id(row["id"]) or ""
        self.store.check_attempt(self.tx, run_id, row["attempt"])
        self.runs[run_id] = RunStatus(row["status"])
        if row["failing"]:
            self.failing.add(run_id)
        return run_id

    def active(self, run_id: str) -> bool:
        status = self.runs.get(run_id)
        if status is None:
            status = self.lock_run(run_id)
        return status is not None and not status.finished

    # -- rows ---------------------------------------------------------------------------

    def insert_instances(
        self, run_id: str, root: str, rows: list[NewInstance], *, later: bool = False
    ) -> None:
        """Write these step rows; with ``later``, held back to go in one statement with
        the other runs' of this batch (:meth:`write_instances`), which must come before
        anything reads or writes them."""
        self.new_instances.append((run_id, self._instance_rows(run_id, root, rows), rows))
        if not later:
            self.write_instances()

    def write_instances(self) -> None:
        """The step rows held back, one statement for all, then their flow limits."""
        if not self.new_instances:
            return
        held, self.new_instances = self.new_instances, []
        self.tx.insert_rows("insert_steps", [row for _, rows, _ in held for row in rows])
        for run_id, _, instances in held:
            mark_new(self.tx, run_id, instances)

    def _instance_rows(
        self, run_id: str, root: str, rows: list[NewInstance]
    ) -> list[dict[str, Any]]:
        now = self.store.clock.now()
        run_attempt = self.store.context(self.tx, run_id).attempt
        return [
            {
                "run_id": run_id,
                "root_run_id": root,
                "key": r.key,
                "step_id": r.step_id,
                "scope": r.scope,
                "kind": r.kind,
                "idx": r.idx,
                "item": None if r.idx is None else dumps(r.item),
                "task": r.task,
                "position": r.position,
                "stage": r.stage,
                "status": r.status.value,
                "deps_remaining": r.deps_remaining,
                "queue_on_release": r.queue_on_release,
                "max_attempts": None
                if r.policy is None or r.policy.retry is None
                else r.policy.retry.max_attempts,
                "retry": None
                if r.policy is None or r.policy.retry is None
                else r.policy.retry.model_dump_json(),
                "timeout": None if r.policy is None else r.policy.timeout,
                "queue": "default" if r.policy is None else r.policy.queue,
                "priority": 0 if r.policy is None else r.policy.priority,
                "max_lost": None if r.policy is None else r.policy.max_lost_attempts,
                "schedule_timeout": None
                if r.policy is None
                else r.policy.schedule_to_start_timeout,
                "heartbeat_timeout": None if r.policy is None else r.policy.heartbeat_timeout,
                "run_attempt": run_attempt,
                "now": now,
            }
            for r in rows
        ]

    def create_counters(self, run_id: str, scope: str, keys: list[str]) -> None:
        """Counters for a scope of these instances; the scope finishes when they reach zero."""
        shards = shards_for(len(keys))
        counts = [0] * shards
        for key in keys:
            counts[shard_of(key, shards)] += 1
        rows = [
            {"run_id": run_id, "scope": scope, "shard": shard, "remaining": count}
            for shard, count in enumerate(counts)
        ]
        # The latch, holding the number of shards for those who count down.
        rows.append({"run_id": run_id, "scope": scope, "shard": -1, "remaining": shards})
        self.tx.many("insert_counter", rows)
        self.store.remember_shards(
            run_id, scope, shards, self.store.context(self.tx, run_id).attempt
        )

    def event(
        self,
        run_id: str,
        type_: str,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        actor: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(
            self.store.event(
                run_id,
                type_,
                step_id=step_id,
                attempt=attempt,
                actor=self.actor if actor is None else actor,
                details=details,
            )
        )

    def begin_run(self, run_id: str) -> None:
        """The run is under way: mark it started (once, before this unit commits)."""
        if not self.store.known_started(run_id):
            self.beginning.add(run_id)

    def start_runs(self, run_ids: Iterable[str]) -> None:
        """Mark these runs started if they are pending (a run row locked elsewhere is skipped)."""
        started = []
        for row in self.tx.all(
            "start_runs", ids=self.store._list(sorted(run_ids)), now=self.store.clock.now()
        ):
            run_id = self.store._id(row["id"]) or ""
            started.append(run_id)
            if run_id in self.runs:
                self.runs[run_id] = RunStatus.RUNNING
            self.event(run_id, "run.started")
        if started:
            self.tx.after_commit(lambda: self.store.remember_started(started))

    def flush_events(self) -> None:
        """The unit's last writes: its scope counters, runs it got under way, its events."""
        self.write_instances()
        self.progress.settle()
        if self.beginning:
            beginning, self.beginning = self.beginning, set()
            self.start_runs(beginning)
        self.write_instances()  # any the settling made
        self.send_completed_runs()
        completed, self.completed = self.completed, []
        for run_ids, sent in completed:
            done = {self.store._id(row["id"]) for row in sent.rows()}
            for run_id in run_ids:
                if run_id not in done:  # it was locked and unfinished: never happens
                    raise StoreError(f"run {run_id} could not be finished though it was held")
        unanswered, self.unanswered = self.unanswered, []
        for run_id, sent in unanswered:
            if sent.one() is None:  # it was locked and unfinished: never happens
                raise StoreError(f"run {run_id} could not be finished though it was held")
        if self.events:
            events, self.events = self.events, []
            self.tx.insert_rows("insert_events", events)

    def send_completed_runs(self) -> None:
        """The runs completed so far, finished in one statement; its answer is checked
        when the unit settles (a claim sent after it brings it back with its own)."""
        if not self.completing:
            return
        completing, self.completing = self.completing, []
        sent = self.tx.send(
            "complete_runs",
            rows=_json_rows([{"id": r, "outputs": o} for r, o in completing]),
            ids=self.store._list([r for r, _ in completing]),
            now=self.store.clock.now(),
        )
        self.completed.append(([r for r, _ in completing], sent))

    # -- how runs end -----------------------------------------------------------------------

    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        outputs: Any = None,
        error: StepError | None = None,
        details: dict[str, Any] | None = None,
        early: bool = False,
    ) -> bool:
        """End the run (holding its lock); cancel what has not started and its child runs.

        A run that completes on its own has nothing left to cancel; one that fails or
        is ended ``early`` (a terminate step) may have steps still to start.
        """
        current = self.lock_run(run_id)
        if current is None or current.finished:
            return False
        if run_id in self.beginning:  # it ran before it ended: it has a start time
            self.beginning.discard(run_id)
            self.start_runs([run_id])
        top_level = self.store.context(self.tx, run_id).parent_run_id is None
        if top_level and status is RunStatus.COMPLETED and not early:
            # Its row is locked here and was found unfinished: the guarded write
            # applies. The runs a batch completes are written in one statement
            # when the unit settles, and checked then.
            self.completing.append((run_id, dumps(outputs)))
            self.runs[run_id] = status
            self.event(run_id, "run.completed", details=dict(details) if details else None)
            self.outcome.finished_runs[run_id] = status
            return True
        sent = self.tx.send(
            "finish_run",
            run_id=run_id,
            status=status.value,
            outputs=None if status is not RunStatus.COMPLETED else dumps(outputs),
            error=None if error is None else dumps(error.to_json()),
            now=self.store.clock.now(),
        )
        if top_level:
            # Its row is locked here and was found unfinished: the guarded write
            # applies. Nothing waits for its answer; it is checked before commit.
            self.unanswered.append((run_id, sent))
            row: dict[str, Any] | None = {"parent_run_id": None, "parent_step": None}
        else:
            row = sent.one()
        if row is None:
            return False
        self.runs[run_id] = status
        if early or status is not RunStatus.COMPLETED:
            rows = self.tx.all("cancel_unstarted", run_id=run_id, now=self.store.clock.now())
            for cancelled in rows:
                self.event(run_id, "step.cancelled", step_id=cancelled["key"])
            self.cancel_children(run_id, f"its parent run {status.value}")
        about = dict(details or {})
        if error is not None:
            about["error"] = error.to_json()
        self.event(run_id, f"run.{status.value}", details=about or None)
        self.outcome.finished_runs[run_id] = status
        if status is RunStatus.FAILED:
            start_failure_handler(self, run_id, status, error)
        parent = self.store._id(row["parent_run_id"])
        if parent is not None:
            self.progress.child_finished(
                parent, row["parent_step"], run_id, status, outputs=outputs, error=error
            )
        return True

    def cancel_children(self, run_id: str, reason: str) -> None:
        """Cancel the run's child runs still going (children lock after their parent)."""
        rows = self.tx.all("child_runs", run_id=run_id)
        for row in rows:
            # Without waiting: the child's own transaction may hold its row and be
            # about to touch its parent's step (then this one starts over).
            self.cancel_run(self.store._id(row["id"]) or "", reason)

    def cancel_run(
        self,
        run_id: str,
        reason: str,
        *,
        actor: str | None = None,
        run_failure_handler: bool = False,
    ) -> bool:
        """End the run as cancelled with its child runs; its failure handler starts only
        when asked (``run_failure_handler``)."""
        error = StepError("Cancelled", reason)
        status = self.lock_run(run_id)
        if status is None or status.finished:
            return False
        row = self.tx.one(
            "finish_run",
            run_id=run_id,
            status=RunStatus.CANCELLED.value,
            outputs=None,
            error=dumps(error.to_json()),
            now=self.store.clock.now(),
        )
        if row is None:
            return False
        self.runs[run_id] = RunStatus.CANCELLED
        for cancelled in self.tx.all("cancel_unstarted", run_id=run_id, now=self.store.clock.now()):
            self.event(run_id, "step.cancelled", step_id=cancelled["key"])
        self.request_stop(run_id, actor=actor)
        self.cancel_children(run_id, "its parent run was cancelled")
        self.event(run_id, "run.cancelled", actor=actor, details={"reason": reason})
        self.outcome.finished_runs[run_id] = RunStatus.CANCELLED
        if run_failure_handler:
            start_failure_handler(self, run_id, RunStatus.CANCELLED, error)
        return True

    def cancel_listed_children(self, rows: list[dict[str, Any]], reason: str) -> None:
        """Child runs of step rows just cancelled (a scope that failed)."""
        children = sorted(
            {self.store._id(r["child_run_id"]) or "" for r in rows if r.get("child_run_id")}
        )
        for child in children:
            self.cancel_run(child, reason)

    def request_stop(self, run_id: str, *, actor: str | None = None) -> None:
        """Ask the workers running the run's attempts to stop them (they learn it by
        heartbeat: ``ctx.cancelled``, and an async task is cancelled)."""
        for row in self.tx.all("request_stop", run_id=run_id):
            self.event(
                run_id,
                "step.stop_requested",
                step_id=row["key"],
                attempt=row["attempt"],
                actor=actor,
            )

    # -- pausing ------------------------------------------------------------------------------

    def pause_run(self, run_id: str, *, actor: str | None = None, stop_now: bool = False) -> bool:
        """Pause the run (holding its lock) and its child runs: nothing new of them starts.

        Its queued steps are held out of the claim indexes; steps queued while it
        is paused are refused by the claims themselves, and its timers by the
        timer sweep. With ``stop_now`` its running attempts are asked to stop.
        """
        status = self.lock_run(run_id)
        if status not in (RunStatus.PENDING, RunStatus.RUNNING):
            return False
        if self.tx.one("pause_run", id=run_id, now=self.store.clock.now()) is None:
            return False
        self.runs[run_id] = RunStatus.PAUSED
        self.tx.run("hold_steps", run_id=run_id)
        self.event(
            run_id, "run.paused", actor=actor, details={"stop_now": stop_now} if stop_now else None
        )
        if stop_now:
            self.request_stop(run_id, actor=actor)
        for row in self.tx.all("child_runs", run_id=run_id):
            self.pause_run(self.store._id(row["id"]) or "", actor=actor, stop_now=stop_now)
        return True

    def resume_run(self, run_id: str, *, actor: str | None = None) -> bool:
        """Resume a paused run and its paused child runs: what was held is claimable again."""
        status = self.lock_run(run_id)
        if status is not RunStatus.PAUSED:
            return False
        if self.tx.one("resume_run", id=run_id, now=self.store.clock.now()) is None:
            return False
        self.runs[run_id] = RunStatus.RUNNING
        if self.tx.run("unhold_steps", run_id=run_id, now=self.store.clock.now()):
            self.tx.queued(run_id, "")  # wake the workers
        self.tx.run("clear_stop", run_id=run_id)
        self.event(run_id, "run.resumed", actor=actor)
        for row in self.tx.all("child_runs", run_id=run_id):
            self.resume_run(self.store._id(row["id"]) or "", actor=actor)
        return True


def _json_rows(rows: list[dict[str, Any]]) -> str:
    """Rows for a statement that writes any number of them (one JSON array)."""
    return json.dumps(rows, separators=(",", ":"))
