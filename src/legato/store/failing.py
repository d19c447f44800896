"""What a failure does to the rest of its scope, inside one transaction.

As in GitHub Actions: a failed step stops everything of its scope (the run, a
map's item, a switch's branch, a group, a loop's iteration) that has not
started, except the steps whose ``when`` reacts to failures (``always()``,
``failure()``, ``cancelled()``). While those are still to run the scope is *failing*: its first
error is kept on its holder's row (the run's row for the run itself), compound
steps still running are cancelled with what they hold, tasks already running
finish and keep their results, and the scope fails with that error once the
last of them is done (:meth:`Flow.finish_scope`, :meth:`Flow.complete_run`).
"""

from __future__ import annotations

from legato.engine.planner import reacts_to_failure
from legato.model.instances import ITEM, ITERATION
from legato.model.runs import StepError
from legato.model.states import RunStatus, StepStatus
from legato.model.steps import GroupStep, SwitchStep
from legato.payload import dumps
from legato.store.flow import Flow, Inst, _inside

__all__ = ["Failing"]


class Failing(Flow):
    """Failures of instances, and the failing scopes they make."""

    def failed(self, inst: Inst, error: StepError) -> None:
        """An instance failed for good: it fails its scope, unless it continues on error."""
        graph = self.graph(inst.run_id)
        step = graph.steps[inst.step_id]
        if inst.kind == ITERATION:
            loop = self.instances(inst.run_id, [inst.scope])
            if loop:
                self._fail_now(loop[0], _inside(error, inst.key))
            return
        if inst.is_item:
            if step.continue_on_error:
                self._item_finished(inst)
            else:
                self.fail_scope(inst.run_id, inst.scope, _inside(error, inst.key))
            return
        if step.continue_on_error:
            self.finished(inst, StepStatus.FAILED)
            return
        self.fail_scope(inst.run_id, inst.scope, error.at_step(error.step or inst.key), inst)

    def fail_scope(
        self, run_id: str, scope: str, error: StepError, member: Inst | None = None
    ) -> None:
        """A failure inside ``scope`` (of ``member``, one of its steps): nothing more
        starts in it, and it fails.

        Except the steps of the scope that asked to run after a failure (their
        ``when`` calls ``always()``, ``failure()`` or ``cancelled()``): then the
        scope is *failing*. Everything else not yet started is cancelled, those
        steps are decided as their dependencies finish, and the scope fails, with
        this first error, once they and the steps already running are done.
        """
        if member is not None and self._fails_later(run_id, scope, error, member):
            return
        if scope == "":
            self.unit.finish_run(run_id, RunStatus.FAILED, error=error)
            return
        rows = self.instance_rows(run_id, [scope])
        row = rows.get(scope)
        if row is None or row["status"] != StepStatus.RUNNING:
            return
        cancelled = self.tx.all(
            "cancel_scope", run_id=run_id, scope=scope, now=self.store.clock.now()
        )
        for c in cancelled:
            self.unit.event(run_id, "step.cancelled", step_id=c["key"])
        self.unit.cancel_listed_children(cancelled, f"a step beside it in {scope} failed")
        self._fail_now(Inst.of(run_id, row), error)

    def _fails_later(self, run_id: str, scope: str, error: StepError, member: Inst) -> bool:
        """Fail ``scope`` once its steps that react to failures have run, if it has any
        still waiting; False when it has none (it fails now)."""
        reactors = self._reactors(run_id, scope)
        if not reactors:
            return False
        members = self.tx.all("scope_members", run_id=run_id, scope=scope)
        waiting = {
            m["key"] for m in members if m["status"] == "waiting" and m["step_id"] in reactors
        }
        failing = self._failing_error(run_id, scope)
        if not waiting and failing is None:
            return False
        if failing is None:
            self._mark_failing(run_id, scope, error)
        for row in members:
            if row["key"] == member.key or row["key"] in waiting:
                continue
            if row["status"] == "running" and row["kind"] == "task":
                continue  # its worker finishes it, and its result counts
            self._cancel_member(Inst.of(run_id, row))
        self.finished(member, StepStatus.FAILED)
        return True

    def _reactors(self, run_id: str, scope: str) -> frozenset[str]:
        """Ids of the steps of the scope instance ``scope`` that run after failures."""
        graph = self.graph(run_id)
        if scope == "":
            name: str | None = ""
        else:
            holder = self.instance_rows(run_id, [scope]).get(scope)
            if holder is None:
                return frozenset()
            step = graph.steps[holder["step_id"]]
            if holder["kind"] in (ITEM, ITERATION):
                name = step.id
            elif isinstance(step, SwitchStep):
                name = (self.store._json(holder["inputs"]) or {}).get("branch")
            elif isinstance(step, GroupStep):
                name = step.id
            else:
                name = None  # a map calling its task: its items are not steps
        if name is None or name not in graph.scopes:
            return frozenset()
        return frozenset(s for s in graph.scopes[name].steps if reacts_to_failure(graph.steps[s]))

    def _failing_error(self, run_id: str, scope: str) -> StepError | None:
        """The first error of a failing scope (None: the scope is not failing)."""
        if scope == "":
            if self.unit.lock_run(run_id) is None or run_id not in self.unit.failing:
                return None  # known from its lock: no read for every run that completes
            row = self.tx.one("run_error", id=run_id)
        else:
            row = self.instance_rows(run_id, [scope]).get(scope)
        raw = None if row is None else self.store._json(row["error"])
        return StepError.from_json(raw) if raw else None

    def _mark_failing(self, run_id: str, scope: str, error: StepError) -> None:
        if scope == "":
            self.unit.lock_run(run_id)
            self.tx.run(
                "mark_run_failing",
                id=run_id,
                error=dumps(error.to_json()),
                now=self.store.clock.now(),
            )
            self.unit.failing.add(run_id)
        else:
            holder = self.instance_rows(run_id, [scope])[scope]
            self.tx.run("mark_instance_failing", id=holder["id"], error=dumps(error.to_json()))
        self.unit.event(
            run_id,
            "scope.failing",
            step_id=scope or None,
            details={"error": error.to_json()},
        )

    def _cancel_member(self, inst: Inst) -> None:
        """Cancel a step of a failing scope that has not started (or, for a compound, its
        unstarted insides), then release what waits for it."""
        if inst.kind != "task":
            inside = self.tx.all(
                "cancel_scope", run_id=inst.run_id, scope=inst.key, now=self.store.clock.now()
            )
            for c in inside:
                self.unit.event(inst.run_id, "step.cancelled", step_id=c["key"])
            self.unit.cancel_listed_children(inside, f"a step beside {inst.key} failed")
        row = self.tx.one("cancel_instance", id=inst.id, now=self.store.clock.now())
        if row is None:
            return  # decided meanwhile (a successor of another cancelled step)
        self.unit.event(inst.run_id, "step.cancelled", step_id=inst.key)
        self.unit.cancel_listed_children([row], f"a step beside {inst.key} failed")
        self.finished(inst, StepStatus.CANCELLED)
