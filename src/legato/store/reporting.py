"""A worker's batch in one transaction: results, hand-backs, sweeps, timers, claims.

:class:`Report` applies what one :meth:`SQLStore.report_and_claim` call
carries, through the :class:`~legato.store.unit.Unit` it is (the lock order
is set out there). Runs of failed attempts, hand-backs and lease sweeps are
locked first: what they decide (retry or not, fail the run) depends on the
run still going. A completed attempt locks nothing of its run: it releases
its successors and counts its scope down, and only the one that finishes
the run takes the run's row.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from legato.config import Secrets
from legato.engine.planner import ResolvedCall, TaskDefaults, resolve_inputs, resolve_with_secrets
from legato.engine.retry import RetryDecision, decide_retry
from legato.errors import RunNotFoundError, SecretError
from legato.model.instances import item_key, place_of
from legato.model.runs import StepError
from legato.model.spec import RetryPolicy
from legato.model.states import RunStatus, StepStatus
from legato.model.steps import LoopStep, MapStep, TaskStep
from legato.payload import child_path, dumps, to_json
from legato.store.base import (
    AttemptFailure,
    AttemptRef,
    ClaimedStep,
    ClaimRequest,
    Pending,
    ReportOutcome,
    StepResult,
    Tx,
)
from legato.store.batched import send_completions
from legato.store.chained import chained
from legato.store.limits import Gate
from legato.store.progress import Inst
from legato.store.sql import SQLStore
from legato.store.timeouts import TimeoutSweep
from legato.store.unit import Unit

__all__ = ["Report"]

#: timers fired per sweep
_TIMER_LIMIT = 100
#: claim statements one claim may run when flow limits turn steps back
_CLAIM_ROUNDS = 3


class Report(Unit):
    """One ``report_and_claim`` transaction."""

    def __init__(self, store: SQLStore, tx: Tx, hints: set[str] | None = None) -> None:
        super().__init__(store, tx, hints)
        #: completions sent ahead, by step run (in the order sent), read when each is applied
        self._completions: dict[int, list[Pending]] = {}

    def apply(
        self,
        results: Sequence[StepResult],
        claim: ClaimRequest | None,
        release: Sequence[AttemptRef],
        worker_id: str | None,
    ) -> ReportOutcome:
        self.actor = worker_id or (claim.worker_id if claim is not None else None)
        adopting = claim is not None and claim.adopt is not None
        if not release and not self.hints and not adopting and chained(self, results, claim):
            self.store.checkpoint("before_commit")
            self.flush_events()
            return self.outcome
        # A failure, or an attempt that stopped when asked, decides by its run's status.
        failing = {r.run_id for r in results if not r.ok or r.stopped}
        handing_back = {ref.run_id for ref in release}
        completed = [r for r in results if r.ok]
        # A run whose only step completes here finishes here: its row is taken
        # first, with the others, rather than one by one after its step's.
        finishing = self._finishing({r.run_id: r.step_id for r in completed if not r.stopped})
        self.lock_runs(failing | handing_back | self.hints | finishing)
        self.store.checkpoint("runs_locked")
        self._start_if_pending({r.run_id for r in completed})
        ordered = sorted(results, key=lambda r: (r.run_id, r.step_id))
        # The completions go out together, in one statement (one round trip on
        # PostgreSQL), each read where it is applied.
        completing: dict[int, StepResult] = {}
        for r in ordered:
            if r.ok and not r.stopped:
                completing.setdefault(r.step_run_id, r)  # a second report of one is stale
        for step_run_id, pending in send_completions(
            self.store, self.tx, list(completing.values())
        ).items():
            self._completions[step_run_id] = [pending]
        for result in ordered:
            if result.stopped:
                self._stopped(result)
            elif result.ok:
                self._complete(result)
            elif self._fail_attempt(result):
                self.outcome.accepted += 1
            else:
                self.outcome.stale.append(result)
        for ref in release:
            self._release(ref, worker_id or "")
        self.progress.settle()  # scopes finished now queue what follows, for this claim
        self.send_completed_runs()  # answered with the claim's rows
        if claim is not None:
            if claim.sweep:
                self.outcome.reclaimed = self._sweep(claim.sweep_limit)
                TimeoutSweep(self).sweep(claim.sweep_limit)
                self.tx.run(
                    "prune_flow_windows", limit=claim.sweep_limit, now=self.store.clock.now()
                )
            if claim.sweep or claim.timers:
                self._fire_timers(claim.root_run_id)
            if claim.adopt is not None:
                self.outcome.adopted = self._adopt(claim, claim.adopt)
            self.outcome.claimed = self._claim(claim)
        self.store.checkpoint("before_commit")
        self.flush_events()
        return self.outcome

    # -- results ----------------------------------------------------------------------

    def _start_if_pending(self, run_ids: set[str]) -> None:
        """A run with a step reported has started, even if the claim that should have
        said so was rolled back or skipped its busy run row."""
        unknown = sorted(r for r in run_ids if not self.store.known_started(r))
        if unknown:
            self.start_runs(unknown)

    def _finishing(self, steps: dict[str, str]) -> set[str]:
        """Of these runs (with a step each that completes), those that step finishes:
        their top level is that one step."""
        if not steps:
            return set()
        with suppress(RunNotFoundError):  # those found are kept for this transaction
            self.store.load_contexts(self.tx, sorted(steps))
        finishing = set()
        for run_id, key in steps.items():
            place, step_id = place_of(key)
            try:
                graph = self.progress.graph(run_id)
            except RunNotFoundError:
                continue  # deleted: its result is refused as stale
            if (
                not place.repeats
                and step_id in graph.steps
                and graph.scopes[""].steps == (step_id,)
            ):
                finishing.add(run_id)
        return finishing

    def _send_completion(self, result: StepResult) -> Pending:
        return self.tx.send(
            "complete_step",
            id=result.step_run_id,
            attempt=result.attempt,
            output=result.output_json,
            inputs=result.inputs_json,
            now=self.store.clock.now(),
        )

    def _complete(self, result: StepResult) -> None:
        sent = self._completions.get(result.step_run_id)
        row = (sent.pop(0) if sent else self._send_completion(result)).one()
        if row is None:
            self.outcome.stale.append(result)
            return
        self.outcome.accepted += 1
        self.event(
            result.run_id,
            "step.completed",
            step_id=row["key"],
            attempt=result.attempt,
            actor=row["worker_id"],  # the attempt's holder, whoever reports for it
        )
        inst = Inst.of(result.run_id, {**row, "id": result.step_run_id})
        self.progress.finished(inst, StepStatus.COMPLETED)

    def _fail_attempt(self, result: StepResult) -> bool:
        row = self.tx.one("running_step", id=result.step_run_id, attempt=result.attempt)
        if row is None:
            return False
        if row["stop_requested"]:  # it failed as it was asked to stop: it stopped
            return self._stopped(result)
        error = result.error or StepError(type="Error", message="unknown failure")
        failures = row["failures"] + 1
        decision = RetryDecision(False)
        policy = _stored_policy(self.store, row)
        if isinstance(policy, str):
            error = StepError(
                type=error.type,
                message=f"{error.message} (not retried: {policy})",
                traceback=error.traceback,
            )
        elif self.active(result.run_id):  # never queue a step again in a finished run
            decision = decide_retry(policy, failures, result.retryable)
        error_json = dumps(error.to_json())
        params = {
            "id": result.step_run_id,
            "attempt": result.attempt,
            "error": error_json,
            "inputs": result.inputs_json,
            "failures": failures,
            "now": self.store.clock.now(),
        }
        details: dict[str, Any] = {"error": error.to_json()}
        key = row["key"]
        if decision.retry:
            self.tx.run("retry_step", delay=float(decision.delay), **params)
            details["retry_in"] = round(decision.delay, 3)
            if decision.delay > 0:
                soonest = self.outcome.next_retry_in
                self.outcome.next_retry_in = min(decision.delay, soonest or decision.delay)
            else:
                self.tx.queued(result.run_id, key)
            self._record_failure(
                result.run_id,
                key,
                result.attempt,
                error,
                "step.retrying",
                details,
                retry_in=decision.delay,
                actor=row["worker_id"],
            )
            return True
        failed = self.tx.one("fail_step", lost=row["lost"], **params)
        self._record_failure(
            result.run_id,
            key,
            result.attempt,
            error,
            "step.failed",
            details,
            retry_in=None,
            actor=row["worker_id"],
        )
        if failed is not None:
            self.progress.failed(
                Inst.of(result.run_id, {**failed, "id": result.step_run_id}), error.at_step(key)
            )
        return True

    def _record_failure(
        self,
        run_id: str,
        key: str,
        attempt: int,
        error: StepError,
        kind: str,
        details: dict[str, Any],
        *,
        retry_in: float | None,
        lost: bool = False,
        actor: str | None = None,
    ) -> None:
        self.event(run_id, kind, step_id=key, attempt=attempt, actor=actor, details=details)
        self.outcome.failures.append(
            AttemptFailure(run_id, key, attempt, error, retry_in, lost=lost)
        )

    def _stopped(self, result: StepResult) -> bool:
        """An attempt asked to stop has ended: cancelled if its run has ended (what it
        returned kept), else a value completes it and a failure goes back to the queue
        without spending its retries (held while its run is paused)."""
        run_id, key = result.run_id, result.step_id
        now = self.store.clock.now()
        if not self.active(run_id):
            error = StepError("Cancelled", f"step {key!r} stopped: its run was cancelled")
            if result.error is not None and result.error.type == "Cancelled":
                error = result.error
            row = self.tx.one(
                "cancel_attempt",
                id=result.step_run_id,
                attempt=result.attempt,
                error=dumps(error.to_json()),
                output=result.output_json if result.ok else None,
                inputs=result.inputs_json,
                now=now,
            )
            if row is None:
                self.outcome.stale.append(result)
                return False
            self.outcome.accepted += 1
            self.event(run_id, "step.cancelled", step_id=key, attempt=result.attempt)
            return True
        if result.ok:
            self._complete(result)
            return True
        held = self.runs.get(run_id) is RunStatus.PAUSED
        if not self.tx.run(
            "requeue_attempt", id=result.step_run_id, attempt=result.attempt, held=held, now=now
        ):
            self.outcome.stale.append(result)
            return False
        self.outcome.accepted += 1
        self.event(
            run_id,
            "step.stopped",
            step_id=key,
            attempt=result.attempt,
            details={"held": True} if held else None,
        )
        if not held:
            self.tx.queued(run_id, key)
        return True

    # -- hand-backs and lost workers ------------------------------------------------------

    def _release(self, ref: AttemptRef, worker_id: str) -> None:
        changed = self.tx.run(
            "release_step",
            id=ref.step_run_id,
            attempt=ref.attempt,
            worker=worker_id,
            now=self.store.clock.now(),
        )
        if not changed:
            return
        self.outcome.released += 1
        self.event(
            ref.run_id, "step.released", step_id=ref.step_id, attempt=ref.attempt, actor=worker_id
        )
        if self.active(ref.run_id):
            self.tx.queued(ref.run_id, ref.step_id)
            return
        # Its run finished while it ran: handed back, it will not run again.
        for row in self.tx.all("cancel_unstarted", run_id=ref.run_id, now=self.store.clock.now()):
            self.event(ref.run_id, "step.cancelled", step_id=row["key"])

    def _sweep(self, limit: int) -> int:
        candidates = self.tx.all("expired_steps", limit=limit, now=self.store.clock.now())
        if not candidates:
            return 0
        self.store.checkpoint("sweep_candidates")
        run_ids = sorted({self.store._id(c["run_id"]) or "" for c in candidates})
        self.lock_runs(run_ids, wait=False)
        swept = 0
        for candidate in candidates:
            run_id = self.store._id(candidate["run_id"]) or ""
            if run_id not in self.runs:
                continue  # its run is busy in another transaction: next sweep
            row = self.tx.one(
                "expired_step",
                id=candidate["id"],
                attempt=candidate["attempt"],
                now=self.store.clock.now(),
            )
            if row is not None:  # not renewed or reported since the candidates were read
                self._lose(run_id, row)
                swept += 1
        return swept

    def _lose(self, run_id: str, row: dict[str, Any]) -> None:
        key, attempt = row["key"], row["attempt"]
        lost = row["lost"] + 1
        budget = row["max_lost"] or 3
        worker = row["worker_id"]
        stopped = (
            f"worker {worker} stopped renewing its lease (killed, stuck or cut off from the "
            "database)"
        )
        params = {"id": row["id"], "attempt": attempt, "lost": lost}
        now = self.store.clock.now()
        details: dict[str, Any] = {"lost": lost, "max_lost_attempts": budget}
        sweeper = "lease-sweeper"
        if not self.active(run_id):
            error = StepError("LeaseExpired", f"{stopped} after its run had finished")
            self.tx.run("abandon_step", error=dumps(error.to_json()), now=now, **params)
            details["error"] = error.to_json()
            self._record_failure(
                run_id,
                key,
                attempt,
                error,
                "step.cancelled",
                details,
                retry_in=None,
                lost=True,
                actor=sweeper,
            )
            return
        if lost >= budget:
            times = "once" if lost == 1 else f"{lost} times"
            error = StepError(
                "LeaseExpired",
                f"{stopped}; its worker was lost {times}, the most its lost-attempt budget "
                f"allows (max_lost_attempts={budget}), so the step fails",
            )
            failed = self.tx.one(
                "fail_step",
                error=dumps(error.to_json()),
                inputs=None,
                failures=row["failures"],
                now=now,
                **params,
            )
            details["error"] = error.to_json()
            self._record_failure(
                run_id,
                key,
                attempt,
                error,
                "step.failed",
                details,
                retry_in=None,
                lost=True,
                actor=sweeper,
            )
            if failed is not None:
                self.progress.failed(
                    Inst.of(run_id, {**failed, "id": row["id"]}), error.at_step(key)
                )
            return
        error = StepError(
            "LeaseExpired",
            f"{stopped}; lost attempt {lost} of {budget} allowed, so the step runs again "
            "(this does not spend its retries)",
        )
        self.tx.run("lose_step", error=dumps(error.to_json()), now=now, **params)
        details["error"] = error.to_json()
        self._record_failure(
            run_id,
            key,
            attempt,
            error,
            "step.lost",
            details,
            retry_in=0.0,
            lost=True,
            actor=sweeper,
        )
        self.tx.queued(run_id, key)

    def _fire_timers(self, root: str | None) -> None:
        """Sleeps that end, waits that time out and retries that fall due, any run's."""
        rows = self.tx.all("due_timers", limit=_TIMER_LIMIT, root=root, now=self.store.clock.now())
        for row in rows:
            run_id = self.store._id(row["run_id"]) or ""
            self.store.check_attempt(self.tx, run_id, row["run_attempt"])
            self.progress.fire_timer(Inst.of(run_id, row), row["waiting_for"])
        # Tell the claimer when the next one falls due, so it comes back for it
        # then rather than at its next sweep.
        soonest = self.tx.one("next_timer", root=root, now=self.store.clock.now())
        if soonest is not None and soonest["due_in"] is not None:
            due_in = max(float(soonest["due_in"]), 0.0)
            known = self.outcome.next_retry_in
            self.outcome.next_retry_in = due_in if known is None else min(known, due_in)

    # -- claims ----------------------------------------------------------------------------

    def _adopt(self, claim: ClaimRequest, known: tuple[int, ...]) -> list[ClaimedStep]:
        """Attempts the claimer holds but did not know of, their leases renewed; their
        runs were started and their events written by the claim that took them."""
        rows = self.tx.all(
            "adopt_steps",
            worker=claim.worker_id,
            known=self.store._list(known),
            lease=float(claim.lease),
            now=self.store.clock.now(),
        )
        return [step for _, step in self._resolved(claim, rows)]

    def _claim(self, claim: ClaimRequest) -> list[ClaimedStep]:
        pending = self._send_claim(claim)
        return [] if pending is None else self._take_claimed(claim, pending.rows())

    def _send_claim(self, claim: ClaimRequest, limit: int | None = None) -> Pending | None:
        """The claim statement for ``limit`` steps (default the claim's), sent: its rows
        are read later. None if it claims nothing."""
        if claim.limit <= 0 or not claim.tasks or claim.queues == ():
            return None
        if claim.queues is None and claim.root_run_id is None:
            raise ValueError("a claim for every queue must name its run tree (root_run_id)")
        params = {
            "worker": claim.worker_id,
            "tasks": self.store._list(claim.tasks),
            "limit": claim.limit if limit is None else limit,
            "lease": float(claim.lease),
            "now": self.store.clock.now(),
        }
        if claim.root_run_id is not None:
            return self.tx.send(
                "claim_tree_steps",
                root=claim.root_run_id,
                queues=self.store._list(claim.queues),
                **params,
            )
        if claim.queues is not None and len(claim.queues) == 1:
            return self.tx.send("claim_queue_steps", queue=claim.queues[0], **params)
        return self.tx.send("claim_steps", queues=self.store._list(claim.queues), **params)

    def _take_claimed(self, claim: ClaimRequest, rows: list[dict[str, Any]]) -> list[ClaimedStep]:
        """The claimed rows made attempts, as their flow limits let them: their runs
        started, their events recorded."""
        gate = Gate(self.store, self.tx)
        admitted: list[tuple[dict[str, Any], ClaimedStep]] = []
        picked = self._resolved(claim, rows)
        # Steps a flow limit turned back leave room: claim again for it, and the
        # claim statement now passes over them (their slots are full, in this
        # transaction's view). A few rounds at most.
        for round_ in range(_CLAIM_ROUNDS):
            if not picked:
                break
            let_through = gate.admit(picked, claim.defaults)
            admitted += [picked[i] for i in let_through]
            if len(let_through) == len(picked) or round_ == _CLAIM_ROUNDS - 1:
                break
            pending = self._send_claim(claim, claim.limit - len(admitted))
            picked = [] if pending is None else self._resolved(claim, pending.rows())
        if len(admitted) < claim.limit:
            gate.short_claim(claim.defaults)
        if gate.next_in is not None:  # a full rate window: the claimer comes back when it opens
            known = self.outcome.next_retry_in
            self.outcome.next_retry_in = gate.next_in if known is None else min(known, gate.next_in)
        if not admitted:
            return []
        run_ids = list(dict.fromkeys(step.run_id for _, step in admitted))
        fresh = [r for r in run_ids if not self.store.known_started(r) and r not in self.runs]
        fresh += [r for r in run_ids if self.runs.get(r) is RunStatus.PENDING]
        if fresh:
            self.start_runs(fresh)
        claimed = []
        for row, step in admitted:
            self.tx.claimed(step.run_id, row["key"])
            self.event(
                step.run_id,
                "step.started",
                step_id=row["key"],
                attempt=row["attempt"],
                actor=claim.worker_id,
            )
            claimed.append(step)
        return claimed

    def _resolved(
        self, claim: ClaimRequest, rows: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], ClaimedStep]]:
        """Claimed rows in claim order, each with its call resolved."""
        if not rows:
            return []
        rows.sort(key=claim_order)
        for row in rows:  # a run set going again since this process read it is read anew
            self.store.check_attempt(
                self.tx, self.store._id(row["run_id"]) or "", row["run_attempt"]
            )
        run_ids = list(dict.fromkeys(self.store._id(r["run_id"]) or "" for r in rows))
        self.store.load_contexts(self.tx, run_ids)
        picked = []
        for row in rows:
            run_id = self.store._id(row["run_id"]) or ""
            if row["retry"] is None:
                row = self._fill_policy(row, claim.defaults.get(row["task"]))
            wants_item = row["task"] in claim.context_tasks
            picked.append((row, self._claimed(row, run_id, claim.secrets, wants_item)))
        return picked

    def _fill_policy(self, row: dict[str, Any], defaults: TaskDefaults | None) -> dict[str, Any]:
        """A run started without the task's code: this worker's task supplies the defaults."""
        if defaults is None:
            return row
        retry = defaults.retry.model_dump_json()
        self.tx.run(
            "fill_policy",
            id=row["id"],
            retry=retry,
            max_attempts=defaults.retry.max_attempts,
            max_lost=row["max_lost"] or defaults.max_lost_attempts,
            timeout=defaults.timeout,
            heartbeat_timeout=defaults.heartbeat_timeout,
        )
        return {
            **row,
            "retry": defaults.retry.model_dump(mode="json"),  # as either database reads it back
            "max_attempts": defaults.retry.max_attempts,
            "timeout": row["timeout"] if row["timeout"] is not None else defaults.timeout,
            "heartbeat_timeout": row["heartbeat_timeout"]
            if row["heartbeat_timeout"] is not None
            else defaults.heartbeat_timeout,
        }

    def _claimed(
        self, row: dict[str, Any], run_id: str, secrets: Secrets, wants_item: bool = False
    ) -> ClaimedStep:
        """The claimed attempt with its call resolved; nothing here may raise.

        Whatever cannot be resolved (an input, a secret, the stored policy, the
        spec) becomes the attempt's ``resolve_error``: the step fails, the
        worker goes on.
        """
        problem: str | None = None
        error_type = "StepSetupError"
        policy = _stored_policy(self.store, row)
        if isinstance(policy, str):
            problem, policy = policy, RetryPolicy()
        timeout = row["timeout"]
        if timeout is not None and not (0 < float(timeout) < float("inf")):
            problem, timeout = f"its stored timeout {timeout!r} is not a positive duration", None
        silence = row.get("heartbeat_timeout")
        if silence is not None and not (0 < float(silence) < float("inf")):
            problem = f"its stored heartbeat timeout {silence!r} is not a positive duration"
            silence = None
        call: ResolvedCall | None = None
        try:
            stored = self.store._json(row["inputs"])
        except ValueError:
            stored = None  # unreadable: resolve them again
        if problem is not None:
            pass
        elif isinstance(stored, dict) and not stored.get("errors") and not stored.get("secrets"):
            # An earlier attempt resolved them: call again the same way (a call
            # reading secrets was recorded masked: it is resolved again).
            call = ResolvedCall(stored.get("args", []), stored.get("kwargs", {}), {})
        else:
            try:
                call = self._resolve(row, run_id, secrets)
            except SecretError as exc:
                problem = str(exc)
                error_type = "SecretError"
            except Exception as exc:  # the spec or the run's context cannot be read
                problem = f"its inputs cannot be resolved: {StepError.of(exc)}"
        resolve_error = None
        if problem is not None:
            resolve_error = StepError(error_type, f"step {row['key']!r}: {problem}")
        elif call is not None and call.errors:
            resolve_error = StepError(
                call.error_type or "TemplateError", call.error_message(row["key"])
            )
        index, item, iteration = self._whereabouts(row, run_id, wants_item)
        return ClaimedStep(
            index=index,
            item=item,
            iteration=iteration,
            heartbeat_timeout=None if silence is None else float(silence),
            step_run_id=row["id"],
            run_id=run_id,
            step_id=row["key"],
            task=row["task"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"] or policy.max_attempts,
            retry=policy,
            timeout=timeout,
            priority=row["priority"],
            args=[] if call is None else call.args,
            kwargs={} if call is None else call.kwargs,
            resolve_error=resolve_error,
            input_errors={} if call is None else call.errors,
            recorded=None if call is None else call.recorded,
            hidden=() if call is None else call.hidden,
        )

    def _whereabouts(
        self, row: dict[str, Any], run_id: str, wants_item: bool
    ) -> tuple[int | None, Any, int | None]:
        """The attempt's map index, item (read only for a task that takes a context) and
        loop iteration, for its context; what cannot be read is left out."""
        try:
            place = place_of(row["key"])[0]
            graph = self.progress.graph(run_id)
            loop_at = place.index_of(LoopStep, graph)
            iteration = None if loop_at is None else loop_at[1]
            if row["idx"] is not None:  # a map's item calling its task
                return row["idx"], self.store._json(row["item"]), iteration
            map_at = place.index_of(MapStep, graph)
            if map_at is None:
                return None, None, iteration
            item = None
            if wants_item:
                compound, index = map_at
                depth = [c for c, _ in place.repeats].index(compound)
                key = item_key(compound, index, place.truncated(depth))
                found = self.progress.instance_rows(run_id, [key]).get(key)
                item = None if found is None else self.store._json(found["item"])
            return map_at[1], item, iteration
        except Exception:
            return None, None, None

    def _resolve(self, row: dict[str, Any], run_id: str, secrets: Secrets) -> ResolvedCall:
        graph = self.progress.graph(run_id)
        step = graph.steps[row["step_id"]]
        key = row["key"]
        if (
            isinstance(step, TaskStep)
            and not step.args
            and step.inputs == {}
            and not graph.secrets.get(step.id)
        ):
            return ResolvedCall([], {}, {})  # nothing to resolve: no context to build
        if isinstance(step, MapStep):
            # An item of a map calling its task: the item is on the row.
            place = place_of(row["scope"])[0]
            context, _ = self.progress.context(run_id, step.id, place, with_deps=False)
            context["item"] = self.store._json(row["item"])
            context["index"] = row["idx"]
            if step.matrix:
                context["matrix"] = context["item"]
        else:
            assert isinstance(step, TaskStep)
            context, _ = self.progress.context(run_id, step.id, place_of(key)[0], with_deps=False)

        def gate(value: Any, name: str) -> Any:
            # Resolved inputs are stored with the attempt, so they pass the JSON
            # gate too (``params.d.items()`` is no JSON); this also copies them.
            if name.startswith("args["):
                what, path = f"step {key!r} args", "$" + name.removeprefix("args")
            elif name == "inputs" and isinstance(step.inputs, str):
                what, path = f"step {key!r} inputs", "$"
            else:
                what, path = f"step {key!r} inputs", child_path("$", name)
            plain, _ = to_json(value, what=what, max_bytes=None, path=path)
            return plain

        names = graph.secrets.get(step.id)
        if names:  # only a call that reads secrets looks them up, here in the worker
            return resolve_with_secrets(step, context, secrets.values(names), gate)
        return resolve_inputs(step, context, gate)


def claim_order(row: dict[str, Any]) -> tuple[Any, ...]:
    """The order claims take queued steps in, as the claim index sorts them: priority
    (highest first), then stage in the workflow (latest first), then first queued."""
    queued = row.get("queued_at")
    return (-row["priority"], -(row.get("stage") or 0), queued is None, queued or 0, row["id"])


#: retry policies read, by their stored text: a worker reads the same few on every claim
_POLICIES: dict[str, RetryPolicy] = {}
_POLICIES_KEPT = 256


def _stored_policy(store: SQLStore, row: dict[str, Any]) -> RetryPolicy | str:
    """The step's retry policy as stored, or why it cannot be read."""
    raw = row.get("retry")
    if raw is None:
        return RetryPolicy()  # the task's defaults were never known here: no retries
    # SQLite hands back the text, PostgreSQL the decoded value: the text is the key
    # (a policy is immutable, so every attempt may share the one read).
    try:
        key = raw if isinstance(raw, str) else dumps(raw)
    except Exception:
        key = None
    known = None if key is None else _POLICIES.get(key)
    if known is not None:
        return known
    try:
        policy = RetryPolicy.model_validate(store._json(raw))
    except Exception as exc:
        return f"its stored retry policy cannot be read ({type(exc).__name__}: {exc})"
    if key is not None:
        if len(_POLICIES) >= _POLICIES_KEPT:
            _POLICIES.clear()
        _POLICIES[key] = policy
    return policy
