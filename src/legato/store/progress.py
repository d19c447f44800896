"""What each kind of step does when it is ready, inside the transaction that made it so.

A task is queued for a worker; a switch opens its chosen branch, a group its
steps; a map creates
its items; a loop its first iteration (and the next, while ``until`` does not
hold); a sub-workflow starts its child run; a sleep or a signal wait
suspends until its timer or its signal; ``set_vars`` and ``terminate`` act at
once. Only tasks ever take a worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legato.engine.planner import (
    NewInstance,
    StepPolicy,
    items_of,
    loop_continues,
    plan_scope,
    stage_of,
    stages,
    terminate_outcome,
    truthy,
    wake_time,
)
from legato.engine.retry import decide_retry
from legato.model.instances import ITEM, ITERATION, Place, item_key, place_of
from legato.model.runs import StepError
from legato.model.spec import RetryPolicy
from legato.model.states import RunStatus, StepStatus
from legato.model.steps import (
    GroupStep,
    LoopStep,
    MapStep,
    SetVarsStep,
    SignalStep,
    SleepStep,
    Step,
    SubWorkflowStep,
    SwitchStep,
    TaskStep,
    TerminateStep,
)
from legato.payload import dumps, loads, to_json

if TYPE_CHECKING:
    pass

from legato.store.failing import Failing
from legato.store.flow import Inst, _error, _Failed, _plain, _with_status

__all__ = ["Inst", "Progress"]


class Progress(Failing):
    """:class:`~legato.store.flow.Flow` with the decisions of every kind of step."""

    def _decide(self, inst: Inst, step: Step, context: dict[str, Any], place: Place) -> None:
        if isinstance(step, TaskStep):
            self._queue(inst)
            return
        # A step the engine decides is the run under way, as a claimed task is.
        self.unit.begin_run(inst.run_id)
        if isinstance(step, SwitchStep):
            self._switch(inst, step, context, place)
        elif isinstance(step, GroupStep):
            self._begin(inst, None)
            self.open_scope(inst.run_id, step.id, place, inst.key, self._position(inst))
        elif isinstance(step, MapStep):
            self._map(inst, step, context, place)
        elif isinstance(step, LoopStep):
            self._begin(inst, None)
            self._iteration(inst, step, place, 0)
        elif isinstance(step, SubWorkflowStep):
            self._start_child(inst, step, context, attempt=1)
        elif isinstance(step, SleepStep):
            self._sleep(inst, step, context)
        elif isinstance(step, SignalStep):
            self._await_signal(inst, step)
        elif isinstance(step, SetVarsStep):
            self._set_vars(inst, step, context)
        elif isinstance(step, TerminateStep):
            self._terminate(inst, step, context)
        else:  # pragma: no cover - the spec admits no other kind
            raise AssertionError(step.kind)

    def _switch(self, inst: Inst, step: SwitchStep, context: dict[str, Any], place: Place) -> None:
        value = self._evaluate(step, "value", step.value, context)
        branch = step.branch_scope(value)
        self._begin(inst, {"value": _plain(value), "branch": branch})
        graph = self.graph(inst.run_id)
        defaults = self.store.run_defaults(self.tx, inst.run_id, graph)
        position = self._position(inst)  # a branch's steps are listed right after it
        skipped: list[NewInstance] = []
        for scope in step.scopes:
            if scope != branch:
                skipped += [
                    _with_status(r, StepStatus.SKIPPED)
                    for r in plan_scope(graph, scope, place, inst.key, defaults, position)
                ]
        if skipped:
            root = self.store.context(self.tx, inst.run_id).root_run_id
            self.unit.insert_instances(inst.run_id, root, skipped)
        if branch is None:
            self._complete(inst, None)
            return
        self.open_scope(inst.run_id, branch, place, inst.key, position)

    def _map(self, inst: Inst, step: MapStep, context: dict[str, Any], place: Place) -> None:
        try:
            items = items_of(step, self._evaluate(step, "for_each", step.for_each, context))
            plain, _ = to_json(items, what=f"step {step.id!r} items", max_bytes=None)
        except _Failed:
            raise
        except Exception as exc:
            raise _Failed(_error(exc, step, "for_each")) from None
        self._begin(inst, {"items": len(plain)})
        if not plain:
            self._complete(inst, [])
            return
        graph = self.graph(inst.run_id)
        policy = None
        if step.task:
            defaults = self.store.run_defaults(self.tx, inst.run_id, graph)
            policy = StepPolicy.of(step, defaults.get(step.task))
        limit = step.max_parallel
        position = self._position(inst)
        stage = stage_of(graph, stages(graph), step.id)
        rows = []
        for index, item in enumerate(plain):
            gated = limit is not None and index >= limit
            rows.append(
                NewInstance(
                    key=item_key(step.id, index, place),
                    step_id=step.id,
                    scope=inst.key,
                    kind="task" if step.task else ITEM,
                    position=position,
                    stage=stage,
                    deps_remaining=1 if gated else 0,
                    task=step.task,
                    policy=policy,
                    idx=index,
                    item=item,
                    status=StepStatus.QUEUED if step.task and not gated else StepStatus.WAITING,
                )
            )
        root = self.store.context(self.tx, inst.run_id).root_run_id
        self.unit.insert_instances(inst.run_id, root, rows)
        self.unit.create_counters(inst.run_id, inst.key, [r.key for r in rows])
        if step.task:
            for row in rows:
                if row.status is StepStatus.QUEUED:
                    self.tx.queued(inst.run_id, row.key)
            return
        ready = [r.key for r in rows if r.deps_remaining == 0]
        for item_inst in self.instances(inst.run_id, ready):
            self.ready(item_inst)

    def _iteration(self, loop: Inst, step: LoopStep, place: Place, index: int) -> None:
        row = NewInstance(
            key=item_key(step.id, index, place),
            step_id=step.id,
            scope=loop.key,
            kind=ITERATION,
            position=self._position(loop),
            deps_remaining=0,
            idx=index,
        )
        root = self.store.context(self.tx, loop.run_id).root_run_id
        self.unit.insert_instances(loop.run_id, root, [row])
        [created] = self.instances(loop.run_id, [row.key])
        self.ready(created)

    def _sleep(self, inst: Inst, step: SleepStep, context: dict[str, Any]) -> None:
        now = self.store.clock.now()
        try:
            wake = wake_time(step, context, now)
        except Exception as exc:
            field = "until" if step.until is not None else "duration"
            raise _Failed(_error(exc, step, field)) from None
        if wake <= now:  # a time already past, or no time at all: nothing to wait for
            self._begin(inst, {"until": round(wake, 3)})
            self._complete(inst, None)
            return
        relative = step.until is None
        self._suspend(
            inst,
            "timer",
            wake_at=None if relative else wake,
            delay=max(wake - now, 0.0) if relative else None,
            details={"until": round(wake, 3)},
        )

    def _suspend(
        self,
        inst: Inst,
        waiting_for: str,
        *,
        wake_at: float | None = None,
        delay: float | None = None,
        child: str | None = None,
        new_attempt: int = 0,
        failed: bool = False,
        details: dict[str, Any] | None = None,
        event: str | None = "step.suspended",
    ) -> None:
        """Park the step until its timer, signal or child; a due time wakes workers then."""
        self.tx.run(
            "suspend_instance",
            id=inst.id,
            wake_at=wake_at,
            delay=delay,
            waiting_for=waiting_for,
            child_run_id=child,
            inputs=None,
            new_attempt=new_attempt,
            failed=int(failed),
            now=self.store.clock.now(),
        )
        if event is not None:
            about = {"waiting_for": waiting_for, **(details or {})}
            self.unit.event(inst.run_id, event, step_id=inst.key, details=about)
        if wake_at is not None or delay is not None:
            soon = delay if delay is not None else (wake_at or 0) - self.store.clock.now()
            soonest = self.unit.outcome.next_retry_in
            self.unit.outcome.next_retry_in = min(max(soon, 0.0), soonest or max(soon, 0.0))

    def _await_signal(self, inst: Inst, step: SignalStep) -> None:
        self.tx.run("open_channel", run_id=inst.run_id, name=step.signal)
        self.tx.one("lock_channel", run_id=inst.run_id, name=step.signal)
        kept = self.tx.one("kept_signal", run_id=inst.run_id, name=step.signal)
        if kept is not None:
            self.tx.run("consume_signal", id=kept["id"], key=inst.key, now=self.store.clock.now())
            self.unit.event(
                inst.run_id, "signal.consumed", step_id=inst.key, details={"signal": step.signal}
            )
            self._complete(inst, self.store._json(kept["payload"]))
            return
        self._suspend(inst, f"signal:{step.signal}", delay=step.timeout)

    def deliver_signal(self, run_id: str, name: str, payload_json: str, sent_by: str | None) -> str:
        """A signal sent to a run: to the step waiting for it, else kept for the next one."""
        self.tx.run("open_channel", run_id=run_id, name=name)
        self.tx.one("lock_channel", run_id=run_id, name=name)
        row = self.tx.one("waiting_for_signal", run_id=run_id, waiting_for=f"signal:{name}")
        now = self.store.clock.now()
        signal = self.tx.one(
            "insert_signal",
            run_id=run_id,
            name=name,
            payload=payload_json,
            sent_by=sent_by,
            now=now,
        )
        assert signal is not None
        self.unit.event(run_id, "signal.received", actor=sent_by, details={"signal": name})
        if row is None:
            return "kept"
        inst = Inst.of(run_id, row)
        self.tx.run("consume_signal", id=signal["id"], key=inst.key, now=now)
        self.unit.event(run_id, "signal.consumed", step_id=inst.key, details={"signal": name})
        self._complete(inst, loads(payload_json))
        return inst.key

    def _set_vars(self, inst: Inst, step: SetVarsStep, context: dict[str, Any]) -> None:
        values = self._evaluate(step, "vars", step.vars, context)
        try:
            plain, _ = to_json(
                values, what=f"step {step.id!r} vars", max_bytes=self.store.max_payload_bytes
            )
        except Exception as exc:
            raise _Failed(_error(exc, step, "vars")) from None
        self.set_variables(inst.run_id, plain, actor=inst.key)
        self._complete(inst, plain)

    def set_variables(self, run_id: str, values: dict[str, Any], *, actor: str | None) -> None:
        """Merge ``values`` into the run's variables (its row locked: variables are run state)."""
        self.unit.lock_run(run_id)
        merged = {**self.variables(run_id), **values}
        self.tx.run("set_variables", id=run_id, variables=dumps(merged), now=self.store.clock.now())
        self.unit.event(
            run_id, "run.variables", actor=actor, details={"set": values, "vars": merged}
        )

    def _terminate(self, inst: Inst, step: TerminateStep, context: dict[str, Any]) -> None:
        try:
            status, reason, outputs = terminate_outcome(step, context)
            plain_outputs, _ = to_json(
                outputs, what=f"step {step.id!r} outputs", max_bytes=self.store.max_payload_bytes
            )
        except Exception as exc:
            raise _Failed(_error(exc, step, "outputs")) from None
        self._complete_row(inst, {"status": status, "reason": reason})
        details = {"terminated_by": inst.key, "reason": reason}
        if status == "completed":
            self.unit.finish_run(
                inst.run_id, RunStatus.COMPLETED, outputs=plain_outputs, details=details, early=True
            )
        else:
            error = StepError(
                "Terminated", reason or f"step {step.id!r} ended the run", step=inst.key
            )
            self.unit.finish_run(inst.run_id, RunStatus.FAILED, error=error, details=details)

    # -- sub-workflows ------------------------------------------------------------------------

    def _start_child(
        self, inst: Inst, step: SubWorkflowStep, context: dict[str, Any], *, attempt: int
    ) -> None:

        params = self._evaluate(step, "params", step.params, context)
        try:
            if step.spec is not None:
                spec = self.graph(inst.run_id).spec.inline_specs[step.id]
            else:
                spec = self.store.newest_spec(self.tx, step.workflow or "", step.version)
        except Exception as exc:
            raise _Failed(_error(exc, step, "workflow")) from None
        try:
            bound = spec.bind_params(params)
            plain, _ = to_json(
                bound, what=f"params of {spec.label}", max_bytes=self.store.max_payload_bytes
            )
        except Exception as exc:
            raise _Failed(_error(exc, step, "params")) from None
        parent = self.store.context(self.tx, inst.run_id)
        child = self.store.create_child_run(
            self.unit,
            spec,
            plain,
            parent_run_id=inst.run_id,
            parent_step=inst.key,
            root_run_id=parent.root_run_id,
            created_by=parent.run.get("created_by"),
        )
        if self.unit.lock_run(inst.run_id) is RunStatus.PAUSED:
            self.unit.pause_run(child, actor=inst.key)  # it waits for its parent's resume
        self._suspend(
            inst,
            f"run:{child}",
            child=child,
            delay=step.timeout,
            new_attempt=1,
            details={"run": child, "workflow": spec.label, "attempt": attempt},
        )

    def child_finished(
        self,
        parent_run: str,
        parent_key: str,
        child: str,
        status: RunStatus,
        *,
        outputs: Any,
        error: StepError | None,
    ) -> None:
        """A child run ended: its outputs complete the parent's step, its failure fails it."""
        rows = self.instance_rows(parent_run, [parent_key])
        row = rows.get(parent_key)
        if row is None or row["status"] != StepStatus.SUSPENDED:
            return
        if self.store._id(row["child_run_id"]) != child:
            return  # an earlier attempt's child
        inst = Inst.of(parent_run, row)
        if status is RunStatus.COMPLETED:
            self._complete(inst, outputs)
            return
        why = error or StepError("ChildFailed", f"child run {child} {status.value}")
        self.child_failed(inst, row, StepError(why.type, f"child run {child}: {why.message}"))

    def child_failed(self, inst: Inst, row: dict[str, Any], error: StepError) -> None:
        """The step's child failed (or timed out): another child after its backoff, or fail."""
        graph = self.graph(inst.run_id)
        step = graph.steps[inst.step_id]
        assert isinstance(step, SubWorkflowStep)
        policy = step.retry or RetryPolicy()
        failures = int(row.get("failures") or 0) + 1
        if self.unit.active(inst.run_id):
            decision = decide_retry(policy, failures, True)
            if decision.retry:
                self._suspend(inst, "retry", delay=decision.delay, failed=True, event=None)
                self.unit.event(
                    inst.run_id,
                    "step.retrying",
                    step_id=inst.key,
                    attempt=row.get("attempt"),
                    details={"error": error.to_json(), "retry_in": round(decision.delay, 3)},
                )
                return
        self._fail_now(inst, error)

    def fire_timer(self, inst: Inst, waiting_for: str | None) -> None:
        """A suspended step's time has come: a sleep ends, a wait times out, a retry starts."""
        graph = self.graph(inst.run_id)
        step = graph.steps[inst.step_id]
        if isinstance(step, SleepStep):
            self._complete(inst, None)
        elif isinstance(step, SignalStep):
            if step.on_timeout == "default":
                self._complete(inst, step.default)
            else:
                self._fail_now(
                    inst,
                    StepError(
                        "SignalTimeout",
                        f"step {step.id!r}: no signal {step.signal!r} within {step.timeout:g}s",
                    ),
                )
        elif isinstance(step, SubWorkflowStep):
            rows = self.instance_rows(inst.run_id, [inst.key])
            row = rows[inst.key]
            if waiting_for == "retry":
                place = place_of(inst.key)[0]
                context, _ = self.context(inst.run_id, inst.step_id, place)
                try:
                    self._start_child(inst, step, context, attempt=int(row["attempt"]) + 1)
                except _Failed as failed:
                    self._fail_now(inst, failed.error)
                return
            child = self.store._id(row["child_run_id"])
            if child is not None:
                self.unit.cancel_run(child, f"its step {inst.key} ran past its timeout")
            self.child_failed(
                inst,
                row,
                StepError(
                    "StepTimeoutError",
                    f"step {step.id!r}: its child run {child} ran longer than {step.timeout:g}s",
                ),
            )

    def _iteration_finished(self, inst: Inst, step: LoopStep) -> None:
        loop_rows = self.instance_rows(inst.run_id, [inst.scope])
        loop = Inst.of(inst.run_id, loop_rows[inst.scope])
        inner = place_of(inst.key + ".")[0]
        outer = place_of(loop.key)[0]
        context, _ = self.context(inst.run_id, step.id, outer, inner=inner)
        done = truthy(self._evaluate(step, "until", step.until, context))
        output = self._scope_output(inst, step, step.id, step.output)
        self._complete_row(inst, output)
        assert inst.idx is not None
        more = loop_continues(step, inst.idx, done)
        if more is False:
            self._complete(loop, output)
        elif more is True:
            self._iteration(loop, step, outer, inst.idx + 1)
        else:
            self._fail_now(
                loop,
                StepError(
                    "LoopExhausted",
                    f"step {step.id!r}: until did not hold within {step.max_iterations} iterations",
                ),
            )
