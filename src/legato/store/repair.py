"""Setting a finished run going again from where it stopped, or from a step.

Inside the operation's transaction (its run locked), :class:`Repair` reads
the run's rows, decides which instances run again, writes them back and lets
the run unfold from there as if they had never finished:

- *retry*: the failed and cancelled instances (and those skipped because a
  dependency did not complete) go back to waiting, keeping the inputs they
  were resolved with; a compound that had opened its scope (a map, a loop,
  a group, a switch, an item, an iteration) runs on with what it holds, so
  only a map's failed items run again and a loop goes on from its failed
  iteration. Completed instances keep their outputs.
- *rerun*: an instance and everything downstream of it, in its scope and the
  scopes around it, run afresh: their inputs are resolved again (with new
  params, if given), and compounds among them open their scopes anew.

Then each scope touched has its dependency counts and counters computed
again from its rows, and what is ready is decided, as a scope opening does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from legato.engine.planner import shard_of
from legato.model.instances import ITEM, ITERATION, instance_key, place_of
from legato.model.states import StepStatus
from legato.model.steps import LoopStep, MapStep

if TYPE_CHECKING:
    from legato.model.graph import Graph
    from legato.store.unit import Unit

__all__ = ["Repair"]

_UNFINISHED = {StepStatus.WAITING, StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.SUSPENDED}
_RETRIED = {StepStatus.FAILED, StepStatus.CANCELLED}
#: instances set going again that each get an event of their own
_EVENTS_PER_STEP = 100


@dataclass
class _Plan:
    #: key -> keep its inputs (retry) or resolve them again (rerun); back to waiting
    waiting: dict[str, bool] = field(default_factory=dict)
    #: compounds that run on with what their scope holds, deepest last
    reopened: list[str] = field(default_factory=list)
    #: rows removed (the insides of compounds that open anew)
    deleted: set[str] = field(default_factory=set)


class Repair:
    """One run's instances made to run again, in the transaction of ``unit``."""

    def __init__(self, unit: Unit, run_id: str) -> None:
        self.unit = unit
        self.tx = unit.tx
        self.store = unit.store
        self.progress = unit.progress
        self.run_id = run_id
        rows = self.tx.all("get_steps", run_id=run_id)
        self.rows: dict[str, dict[str, Any]] = {r["key"]: r for r in rows}
        self.members: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            self.members.setdefault(row["scope"], []).append(row)
        self.plan = _Plan()

    @property
    def graph(self) -> Graph:
        return self.progress.graph(self.run_id)

    # -- what runs again ----------------------------------------------------------------

    def retry(self) -> list[str]:
        """Plan a retry: what failed or was cancelled (and what that skipped) runs again."""
        self._retry_scope("")
        return sorted(self.plan.waiting) + self.plan.reopened

    def _retry_scope(self, scope: str) -> None:
        for row in self.members.get(scope, []):
            status = StepStatus(row["status"])
            again = status in _RETRIED or (
                status is StepStatus.SKIPPED and int(row["deps_failed"] or 0) > 0
            )
            if not again:
                continue
            if self._opened(row):
                self._reopen(row)
                self._retry_scope(row["key"])
            else:
                self.plan.waiting[row["key"]] = True

    def rerun(self, key: str) -> list[str]:
        """Plan a rerun of ``key``, everything downstream of it, and the scopes holding it."""
        row = self.rows[key]
        self._afresh(row)
        self._downstream(row)
        self._up(row)
        return sorted(self.plan.waiting) + self.plan.reopened

    def _afresh(self, row: dict[str, Any]) -> None:
        """The instance runs as if it never had: its insides go, its inputs are resolved anew."""
        if self._opened(row):
            self._delete_inside(row["key"])
        self.plan.waiting[row["key"]] = False

    def _downstream(self, row: dict[str, Any]) -> None:
        """Everything after the instance in its scope runs afresh."""
        graph = self.graph
        place = place_of(row["key"])[0] if row["kind"] not in (ITEM, ITERATION) else None
        if place is None or row["idx"] is not None:
            return  # an item or iteration: its map or loop is what has successors
        seen: set[str] = set()
        todo = list(graph.successors.get(row["step_id"], ()))
        while todo:
            step_id = todo.pop()
            if step_id in seen:
                continue
            seen.add(step_id)
            todo.extend(graph.successors.get(step_id, ()))
            found = self.rows.get(instance_key(graph, step_id, place))
            if found is not None and found["scope"] == row["scope"]:
                self._afresh(found)

    def _up(self, row: dict[str, Any]) -> None:
        """The scopes around a rerun instance run on, and what follows each of them reruns."""
        scope = row["scope"]
        while scope:
            holder = self.rows[scope]
            if holder["kind"] == ITERATION:
                # A loop goes on from this iteration: the later ones go.
                later = [
                    m["key"]
                    for m in self.members.get(holder["scope"], [])
                    if m["idx"] is not None and m["idx"] > holder["idx"]
                ]
                for key in later:
                    self._delete_inside(key)
                    self.plan.deleted.add(key)
            self._reopen(holder)
            if holder["idx"] is None:  # a map, loop, group or switch: its successors rerun
                self._downstream(holder)
            scope = holder["scope"]

    def _opened(self, row: dict[str, Any]) -> bool:
        return row["kind"] != "task" and bool(self.members.get(row["key"]))

    def _reopen(self, row: dict[str, Any]) -> None:
        key = row["key"]
        if key not in self.plan.reopened and StepStatus(row["status"]) is not StepStatus.RUNNING:
            self.plan.reopened.append(key)

    def _delete_inside(self, key: str) -> None:
        for member in self.members.get(key, []):
            self._delete_inside(member["key"])
            self.plan.deleted.add(member["key"])
            self.plan.waiting.pop(member["key"], None)

    # -- writing it -------------------------------------------------------------------------

    def apply(self, *, actor: str | None, operation: str) -> None:
        """Write the plan, count every touched scope again, and decide what is ready."""
        plan, run_id = self.plan, self.run_id
        attempt = self.store.context(self.tx, run_id).attempt
        if plan.deleted:
            deleted = sorted(plan.deleted | {k for k in plan.waiting if self._opened(self.rows[k])})
            self.tx.run(
                "delete_instances", run_id=run_id, keys=self.store._list(sorted(plan.deleted))
            )
            self.tx.run("delete_counters", run_id=run_id, scopes=self.store._list(deleted))
        status: dict[str, StepStatus] = {
            k: StepStatus(r["status"]) for k, r in self.rows.items() if k not in plan.deleted
        }
        for key in plan.waiting:
            status[key] = StepStatus.WAITING
        for key in plan.reopened:
            status[key] = StepStatus.RUNNING
        scopes = {self.rows[k]["scope"] for k in [*plan.waiting, *plan.reopened]}
        scopes |= set(plan.reopened)
        deps: dict[str, tuple[int, int]] = {}
        for scope in scopes:
            deps.update(self._dependencies(scope, status))
        for key in plan.reopened:
            self._write(key, StepStatus.RUNNING, 0, 0, True, attempt)
        for key, keep in plan.waiting.items():
            remaining, failed = deps.get(key, (0, 0))
            self._write(key, StepStatus.WAITING, remaining, failed, keep, attempt)
            if len(plan.waiting) <= _EVENTS_PER_STEP:  # a big map's retry: its run's event says
                self.unit.event(
                    run_id, "step.reset", step_id=key, actor=actor, details={"by": operation}
                )
        for scope in sorted(scopes, key=lambda s: (-s.count("."), s)):
            self._recount(scope, status)
        # Decide what is ready, outermost first, then let compounds with nothing left
        # to run inside finish again (their outputs, a loop's next iteration).
        ready = [k for k in plan.waiting if deps.get(k, (0, 0))[0] == 0]
        ready.sort(key=lambda k: (self.rows[k]["position"], self.rows[k]["id"]))
        for key in ready:
            for inst in self.progress.instances(run_id, [key]):
                if inst.is_item and inst.kind == "task":
                    self.progress._queue(inst)
                else:
                    self.progress.ready(inst, deps_failed=deps.get(key, (0, 0))[1])
        for key in sorted(plan.reopened, key=lambda k: -k.count(".")):
            inside = [m for m in self.members.get(key, []) if m["key"] not in plan.deleted]
            if not any(status.get(m["key"]) in _UNFINISHED for m in inside):
                self._finish_again(key, inside)

    def _write(
        self,
        key: str,
        to: StepStatus,
        remaining: int,
        failed: int,
        keep_inputs: bool,
        attempt: int,
    ) -> None:
        self.tx.run(
            "reset_instance",
            id=self.rows[key]["id"],
            status=to.value,
            deps_remaining=remaining,
            deps_failed=failed,
            keep_inputs=keep_inputs,
            run_attempt=attempt,
            now=self.store.clock.now(),
        )

    def _dependencies(
        self, scope: str, status: dict[str, StepStatus]
    ) -> dict[str, tuple[int, int]]:
        """(dependencies unfinished, dependencies finished without completing) of each
        waiting instance of the scope; a map's items count the slots they wait for."""
        graph = self.graph
        found: dict[str, tuple[int, int]] = {}
        members = [m for m in self.members.get(scope, []) if m["key"] in status]
        items = [m for m in members if m["idx"] is not None]
        if items:
            holder = self.rows.get(scope)
            step = graph.steps.get(holder["step_id"]) if holder else None
            if isinstance(step, LoopStep):
                return {}
            limit = step.max_parallel if isinstance(step, MapStep) else None
            busy = sum(1 for m in items if status[m["key"]] in _UNFINISHED - {StepStatus.WAITING})
            busy += sum(
                1
                for m in items
                if status[m["key"]] is StepStatus.WAITING
                and m["key"] not in self.plan.waiting
                and int(m["deps_remaining"] or 0) == 0
            )
            free = None if limit is None else max(limit - busy, 0)
            for m in sorted(items, key=lambda m: m["idx"]):
                if m["key"] not in self.plan.waiting:
                    continue
                gated = free is not None and free <= 0
                if free is not None and not gated:
                    free -= 1
                found[m["key"]] = (1 if gated else 0, 0)
            return found
        for m in members:
            if status[m["key"]] is not StepStatus.WAITING:
                continue
            place = place_of(m["key"])[0]
            after = graph.ordering.get(m["step_id"], frozenset())
            remaining = failed = 0
            for dep in graph.deps.get(m["step_id"], ()):
                dep_status = status.get(instance_key(graph, dep, place))
                if dep_status is None or dep_status in _UNFINISHED:
                    remaining += 1
                elif dep_status is not StepStatus.COMPLETED and dep not in after:
                    failed += 1
            found[m["key"]] = (remaining, failed)
        return found

    def _recount(self, scope: str, status: dict[str, StepStatus]) -> None:
        """The scope's counters: its unfinished instances, per shard as it opened with."""
        holder = self.rows.get(scope)
        if (
            holder is not None
            and isinstance(self.graph.steps.get(holder["step_id"]), LoopStep)
            and holder["kind"] not in (ITEM, ITERATION)
        ):
            return  # a loop counts no iterations: each decides the next
        if scope == "" and len(self.graph.scopes[""].steps) == 1:
            return  # counts itself
        members = [m["key"] for m in self.members.get(scope, []) if m["key"] in status]
        shards = self.store.shards(self.tx, self.run_id, scope)
        counts = [0] * shards
        for key in members:
            if status[key] in _UNFINISHED:
                counts[shard_of(key, shards)] += 1
        for shard, remaining in enumerate(counts):
            self.tx.run(
                "set_counter", run_id=self.run_id, scope=scope, shard=shard, remaining=remaining
            )

    def _finish_again(self, key: str, inside: list[dict[str, Any]]) -> None:
        """A compound reopened with nothing left to run inside: decide its end again."""
        row = self.rows[key]
        if isinstance(self.graph.steps.get(row["step_id"]), LoopStep) and row["kind"] not in (
            ITEM,
            ITERATION,
        ):
            iterations = [m for m in inside if m["idx"] is not None]
            if not iterations:
                return
            last = max(iterations, key=lambda m: m["idx"])
            attempt = self.store.context(self.tx, self.run_id).attempt
            self._write(last["key"], StepStatus.RUNNING, 0, 0, True, attempt)
            self.progress.finish_scope(self.run_id, last["key"])
            return
        self.progress.finish_scope(self.run_id, key)
