"""The worker's hot path in one transaction: results, hand-backs, sweeps, claims.

:class:`Report` applies what one :meth:`SQLStore.report_and_claim` call
carries. The decisions (retry or not, after how long; is the run over) come
from :mod:`legato.engine`; this module applies them with guarded writes.

Lock order (PostgreSQL; SQLite runs one writer at a time):

1. The rows of the runs whose steps this transaction changes, first and in
   id order (``lock_runs``, ``FOR NO KEY UPDATE``). Runs the sweep adds are
   taken with ``SKIP LOCKED``: a busy run is swept next time.
2. Then step rows of those runs only.

Whatever a run's status becomes (failed, completed) is decided while its row
is held, so a retry cannot be queued beside a failure that commits at the
same moment, and finishing a run cannot deadlock with completing a step.
Claims and heartbeats lock only rows they get without waiting (``SKIP
LOCKED``), so they never wait on anyone and can close no cycle. Inserting an
event takes ``KEY SHARE`` on its run row, which ``NO KEY UPDATE`` never blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from legato.engine.planner import (
    ResolvedCall,
    expression_context,
    resolve_inputs,
    resolve_outputs,
    run_status_after_completion,
)
from legato.engine.retry import RetryDecision, decide_retry
from legato.model.graph import Graph
from legato.model.runs import StepError
from legato.model.spec import RetryPolicy, TaskStep
from legato.model.states import RunStatus, StepStatus
from legato.payload import child_path, dumps, to_json
from legato.store.base import (
    AttemptFailure,
    AttemptRef,
    ClaimedStep,
    ClaimRequest,
    ReportOutcome,
    StepResult,
    Tx,
)
from legato.store.sql import SQLStore

__all__ = ["Report"]


class Report:
    """One ``report_and_claim`` transaction: what it holds, writes and decides."""

    def __init__(self, store: SQLStore, tx: Tx) -> None:
        self.store = store
        self.tx = tx
        self.events: list[dict[str, Any]] = []
        self.outcome = ReportOutcome()
        #: status of every run this transaction holds locked
        self.runs: dict[str, RunStatus] = {}

    def apply(
        self,
        results: Sequence[StepResult],
        claim: ClaimRequest | None,
        release: Sequence[AttemptRef],
        worker_id: str | None,
    ) -> ReportOutcome:
        by_run: dict[str, list[StepResult]] = {}
        for result in results:
            by_run.setdefault(result.run_id, []).append(result)
        releases: dict[str, list[AttemptRef]] = {}
        for ref in release:
            releases.setdefault(ref.run_id, []).append(ref)
        self._lock_runs(sorted(by_run.keys() | releases.keys()))
        self.store.checkpoint("runs_locked")
        for run_id in sorted(by_run):
            if run_id not in self.runs:
                self.outcome.stale.extend(by_run[run_id])  # no such run (deleted)
                continue
            self._apply_results(run_id, by_run[run_id])
        for run_id in sorted(releases):
            if run_id in self.runs:
                for ref in releases[run_id]:
                    self._release(ref, worker_id or "")
        if claim is not None:
            if claim.sweep:
                self.outcome.reclaimed = self._sweep(claim.sweep_limit)
            self.outcome.claimed = self._claim(claim)
        self.store.checkpoint("before_commit")
        if self.events:
            self.tx.many("insert_event", self.events)
        return self.outcome

    # -- locking ----------------------------------------------------------------

    def _lock_runs(self, run_ids: list[str], *, wait: bool = True) -> set[str]:
        wanted = [r for r in run_ids if r not in self.runs]
        if not wanted:
            return set()
        rows = self.tx.all(
            "lock_runs" if wait else "lock_runs_nowait", ids=self.store._list(wanted)
        )
        locked = set()
        for row in rows:
            run_id = self.store._id(row["id"]) or ""
            self.runs[run_id] = RunStatus(row["status"])
            locked.add(run_id)
        started = [r for r in locked if self.runs[r] is not RunStatus.PENDING]
        if started:
            self.tx.after_commit(lambda: self.store.remember_started(started))
        return locked

    def _active(self, run_id: str) -> bool:
        return not self.runs[run_id].finished

    # -- results ------------------------------------------------------------------

    def _apply_results(self, run_id: str, results: list[StepResult]) -> None:
        if self.runs[run_id] is RunStatus.PENDING:
            # A step of it ran, so it has started, even if the claim that should
            # have said so was rolled back or skipped its busy run row.
            self._start_runs([run_id])
        completed = 0
        graph: Graph | None = None
        for result in sorted(results, key=lambda r: r.step_id):
            if not result.ok:
                if self._fail_attempt(result):
                    self.outcome.accepted += 1
                else:
                    self.outcome.stale.append(result)
                continue
            changed = self.tx.run(
                "complete_step",
                id=result.step_run_id,
                attempt=result.attempt,
                output=result.output_json,
                inputs=result.inputs_json,
                now=self.store.clock.now(),
            )
            if not changed:
                self.outcome.stale.append(result)
                continue
            self.outcome.accepted += 1
            completed += 1
            self.events.append(
                self.store.event(
                    run_id, "step.completed", step_id=result.step_id, attempt=result.attempt
                )
            )
            if not self._active(run_id):
                continue  # a step that outlived its run: recorded, and nothing follows it
            graph = graph or self.store.graph(
                self.tx, self.store.context(self.tx, run_id).spec_hash
            )
            successors = graph.successors[result.step_id]
            if successors:
                rows = self.tx.all(
                    "release_successors",
                    run_id=run_id,
                    step_ids=self.store._list(list(successors)),
                    now=self.store.clock.now(),
                )
                for row in rows:
                    if row["status"] == StepStatus.QUEUED:
                        self.events.append(
                            self.store.event(run_id, "step.queued", step_id=row["step_id"])
                        )
                        self.tx.queued(run_id, row["step_id"])
        if completed:
            counts = self.tx.one(
                "count_done", run_id=run_id, n=completed, now=self.store.clock.now()
            )
            assert counts is not None
            if self._active(run_id) and run_status_after_completion(
                counts["steps_done"], counts["steps_total"]
            ):
                graph = graph or self.store.graph(
                    self.tx, self.store.context(self.tx, run_id).spec_hash
                )
                self._complete_run(run_id, graph)

    def _complete_run(self, run_id: str, graph: Graph) -> None:
        context = self.store.context(self.tx, run_id)
        try:
            reads = self.store.outputs(self.tx, run_id, graph.output_reads)
            outputs = resolve_outputs(graph, expression_context(context.params, reads, context.run))
            _, outputs_json = to_json(
                outputs, what="run outputs", max_bytes=self.store.max_payload_bytes
            )
        except Exception as exc:  # whatever the outputs raise fails the run, not the worker
            error = StepError.of(exc)
            self._finish_run(run_id, RunStatus.FAILED, error=error)
            return
        self._finish_run(run_id, RunStatus.COMPLETED, outputs_json=outputs_json)

    def _fail_attempt(self, result: StepResult) -> bool:
        row = self.tx.one("running_step", id=result.step_run_id, attempt=result.attempt)
        if row is None:
            return False
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
        elif self._active(result.run_id):  # never queue a step again in a finished run
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
        if decision.retry:
            self.tx.run("retry_step", delay=float(decision.delay), **params)
            details["retry_in"] = round(decision.delay, 3)
            if decision.delay > 0:
                soonest = self.outcome.next_retry_in
                self.outcome.next_retry_in = min(decision.delay, soonest or decision.delay)
            else:
                self.tx.queued(result.run_id, result.step_id)
            self._record_failure(result, error, "step.retrying", details, retry_in=decision.delay)
            return True
        self.tx.run("fail_step", lost=row["lost"], **params)
        self._record_failure(result, error, "step.failed", details, retry_in=None)
        if self._active(result.run_id):
            self._finish_run(result.run_id, RunStatus.FAILED, error=error.at_step(result.step_id))
        return True

    def _record_failure(
        self,
        ref: StepResult | AttemptRef,
        error: StepError,
        kind: str,
        details: dict[str, Any],
        *,
        retry_in: float | None,
        lost: bool = False,
        actor: str | None = None,
    ) -> None:
        self.events.append(
            self.store.event(
                ref.run_id,
                kind,
                step_id=ref.step_id,
                attempt=ref.attempt,
                actor=actor,
                details=details,
            )
        )
        self.outcome.failures.append(
            AttemptFailure(ref.run_id, ref.step_id, ref.attempt, error, retry_in, lost=lost)
        )

    def _finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        outputs_json: str | None = None,
        error: StepError | None = None,
    ) -> None:
        changed = self.tx.one(
            "finish_run",
            run_id=run_id,
            status=status.value,
            outputs=outputs_json,
            error=None if error is None else dumps(error.to_json()),
            now=self.store.clock.now(),
        )
        if changed is None:
            return
        self.runs[run_id] = status
        if status is not RunStatus.COMPLETED:
            for row in self.tx.all("cancel_unstarted", run_id=run_id, now=self.store.clock.now()):
                self.events.append(
                    self.store.event(run_id, "step.cancelled", step_id=row["step_id"])
                )
        details = {"error": error.to_json()} if error else None
        self.events.append(self.store.event(run_id, f"run.{status.value}", details=details))
        self.outcome.finished_runs[run_id] = status

    # -- hand-backs and lost workers ------------------------------------------------

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
        self.events.append(
            self.store.event(
                ref.run_id,
                "step.released",
                step_id=ref.step_id,
                attempt=ref.attempt,
                actor=worker_id,
            )
        )
        if self._active(ref.run_id):
            self.tx.queued(ref.run_id, ref.step_id)
            return
        # Its run finished while it ran: handed back, it will not run again.
        for row in self.tx.all("cancel_unstarted", run_id=ref.run_id, now=self.store.clock.now()):
            self.events.append(
                self.store.event(ref.run_id, "step.cancelled", step_id=row["step_id"])
            )

    def _sweep(self, limit: int) -> int:
        candidates = self.tx.all("expired_steps", limit=limit, now=self.store.clock.now())
        if not candidates:
            return 0
        self.store.checkpoint("sweep_candidates")
        run_ids = sorted({self.store._id(c["run_id"]) or "" for c in candidates})
        self._lock_runs(run_ids, wait=False)
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
        ref = AttemptRef(row["id"], run_id, row["step_id"], row["attempt"])
        lost = row["lost"] + 1
        budget = row["max_lost"]
        worker = row["worker_id"]
        stopped = (
            f"worker {worker} stopped renewing its lease (killed, stuck or cut off from the "
            "database)"
        )
        params = {"id": ref.step_run_id, "attempt": ref.attempt, "lost": lost}
        now = self.store.clock.now()
        details: dict[str, Any] = {"lost": lost, "max_lost_attempts": budget}
        if not self._active(run_id):
            error = StepError("LeaseExpired", f"{stopped} after its run had finished")
            self.tx.run("abandon_step", error=dumps(error.to_json()), now=now, **params)
            details["error"] = error.to_json()
            self._record_failure(
                ref,
                error,
                "step.cancelled",
                details,
                retry_in=None,
                lost=True,
                actor="lease-sweeper",
            )
            return
        if lost >= budget:
            times = "once" if lost == 1 else f"{lost} times"
            error = StepError(
                "LeaseExpired",
                f"{stopped}; its worker was lost {times}, the most its lost-attempt budget "
                f"allows (max_lost_attempts={budget}), so the step fails",
            )
            error_json = dumps(error.to_json())
            self.tx.run(
                "fail_step",
                error=error_json,
                inputs=None,
                failures=row["failures"],
                now=now,
                **params,
            )
            details["error"] = error.to_json()
            self._record_failure(
                ref,
                error,
                "step.failed",
                details,
                retry_in=None,
                lost=True,
                actor="lease-sweeper",
            )
            self._finish_run(run_id, RunStatus.FAILED, error=error.at_step(ref.step_id))
            return
        error = StepError(
            "LeaseExpired",
            f"{stopped}; lost attempt {lost} of {budget} allowed, so the step runs again "
            "(this does not spend its retries)",
        )
        self.tx.run("lose_step", error=dumps(error.to_json()), now=now, **params)
        details["error"] = error.to_json()
        self._record_failure(
            ref, error, "step.lost", details, retry_in=0.0, lost=True, actor="lease-sweeper"
        )
        self.tx.queued(run_id, ref.step_id)

    # -- claims -----------------------------------------------------------------------

    def _claim(self, claim: ClaimRequest) -> list[ClaimedStep]:
        if claim.limit <= 0 or not claim.tasks or claim.queues == ():
            return []
        if claim.queues is None and claim.root_run_id is None:
            raise ValueError("a claim for every queue must name its run tree (root_run_id)")
        params = {
            "worker": claim.worker_id,
            "tasks": self.store._list(claim.tasks),
            "limit": claim.limit,
            "lease": float(claim.lease),
            "now": self.store.clock.now(),
        }
        if claim.root_run_id is not None:
            rows = self.tx.all(
                "claim_tree_steps",
                root=claim.root_run_id,
                queues=self.store._list(claim.queues),
                **params,
            )
        elif claim.queues is not None and len(claim.queues) == 1:
            rows = self.tx.all("claim_queue_steps", queue=claim.queues[0], **params)
        else:
            rows = self.tx.all("claim_steps", queues=self.store._list(claim.queues), **params)
        if not rows:
            return []
        rows.sort(key=lambda r: (-r["priority"], r["id"]))
        run_ids = list(dict.fromkeys(self.store._id(r["run_id"]) or "" for r in rows))
        fresh = [r for r in run_ids if not self.store.known_started(r) and r not in self.runs]
        fresh += [r for r in run_ids if self.runs.get(r) is RunStatus.PENDING]
        if fresh:
            self._start_runs(fresh)
        contexts = self.store.load_contexts(self.tx, run_ids)
        outputs: dict[str, dict[str, Any]] = {}
        claimed = []
        for row in rows:
            run_id = self.store._id(row["run_id"]) or ""
            self.tx.claimed(run_id, row["step_id"])
            self.events.append(
                self.store.event(
                    run_id,
                    "step.started",
                    step_id=row["step_id"],
                    attempt=row["attempt"],
                    actor=claim.worker_id,
                )
            )
            claimed.append(self._claimed(row, run_id, contexts[run_id].spec_hash, outputs))
        return claimed

    def _start_runs(self, run_ids: list[str]) -> None:
        """Mark these runs started if they are pending (a run row locked elsewhere is skipped)."""
        started = []
        for row in self.tx.all(
            "start_runs", ids=self.store._list(run_ids), now=self.store.clock.now()
        ):
            run_id = self.store._id(row["id"]) or ""
            started.append(run_id)
            if run_id in self.runs:
                self.runs[run_id] = RunStatus.RUNNING
            self.events.append(self.store.event(run_id, "run.started"))
        if started:
            self.tx.after_commit(lambda: self.store.remember_started(started))

    def _claimed(
        self,
        row: dict[str, Any],
        run_id: str,
        spec_hash: str,
        outputs_cache: dict[str, dict[str, Any]],
    ) -> ClaimedStep:
        """The claimed attempt with its call resolved; nothing here may raise.

        Whatever cannot be resolved (an input, the stored policy, the spec)
        becomes the attempt's ``resolve_error``: the step fails, the worker goes on.
        """
        problem: str | None = None
        policy = _stored_policy(self.store, row)
        if isinstance(policy, str):
            problem, policy = policy, RetryPolicy()
        timeout = row["timeout"]
        if timeout is not None and not (0 < float(timeout) < float("inf")):
            problem, timeout = f"its stored timeout {timeout!r} is not a positive duration", None
        call: ResolvedCall | None = None
        try:
            stored = self.store._json(row["inputs"])
        except ValueError:
            stored = None  # unreadable: resolve them again
        if problem is not None:
            pass
        elif isinstance(stored, dict) and not stored.get("errors"):
            # An earlier attempt resolved them: call again the same way.
            call = ResolvedCall(stored.get("args", []), stored.get("kwargs", {}), {})
        else:
            try:
                call = self._resolve(row, run_id, spec_hash, outputs_cache)
            except Exception as exc:  # the spec or the run's context cannot be read
                problem = f"its inputs cannot be resolved: {StepError.of(exc)}"
        resolve_error = None
        if problem is not None:
            resolve_error = StepError("StepSetupError", f"step {row['step_id']!r}: {problem}")
        elif call is not None and call.errors:
            resolve_error = StepError(
                call.error_type or "TemplateError", call.error_message(row["step_id"])
            )
        return ClaimedStep(
            step_run_id=row["id"],
            run_id=run_id,
            step_id=row["step_id"],
            task=row["task"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            retry=policy,
            timeout=timeout,
            priority=row["priority"],
            args=[] if call is None else call.args,
            kwargs={} if call is None else call.kwargs,
            resolve_error=resolve_error,
            input_errors={} if call is None else call.errors,
        )

    def _resolve(
        self,
        row: dict[str, Any],
        run_id: str,
        spec_hash: str,
        outputs_cache: dict[str, dict[str, Any]],
    ) -> ResolvedCall:
        context = self.store.context(self.tx, run_id)
        graph = self.store.graph(self.tx, spec_hash)
        step = graph.steps[row["step_id"]]
        assert isinstance(step, TaskStep)
        outputs = outputs_cache.setdefault(run_id, {})
        missing = graph.reads[step.id] - outputs.keys()
        if missing:
            outputs.update(self.store.outputs(self.tx, run_id, missing))
        ctx = expression_context(context.params, outputs, context.run)

        def gate(value: Any, name: str) -> Any:
            # Resolved inputs are stored with the attempt, so they pass the JSON
            # gate too (``params.d.items()`` is no JSON); this also copies them.
            if name.startswith("args["):
                what, path = f"step {step.id!r} args", "$" + name.removeprefix("args")
            elif name == "inputs" and isinstance(step.inputs, str):
                what, path = f"step {step.id!r} inputs", "$"
            else:
                what, path = f"step {step.id!r} inputs", child_path("$", name)
            plain, _ = to_json(value, what=what, max_bytes=None, path=path)
            return plain

        return resolve_inputs(step, ctx, gate)


def _stored_policy(store: SQLStore, row: dict[str, Any]) -> RetryPolicy | str:
    """The step's retry policy as stored, or why it cannot be read."""
    try:
        return RetryPolicy.model_validate(store._json(row["retry"]))
    except Exception as exc:
        return f"its stored retry policy cannot be read ({type(exc).__name__}: {exc})"
