"""How a run unfolds, inside one transaction: steps become ready, scopes open and finish.

When an instance finishes, its successors in its scope count one dependency
less and its scope counts one instance less; a successor with none left is
*ready*, a scope with none left is *finished*. A ready step's condition is
decided here, in the same transaction, then what it does by kind
(:mod:`legato.store.progress`). The decisions come from
:mod:`legato.engine.planner`; this module applies them with guarded writes.
Everything here costs the same whatever the size of the run: a finished item
touches its own row, a counter row and, where items wait for a slot, the next
one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from legato.engine.planner import (
    NewInstance,
    condition_holds,
    expression_context,
    plan_scope,
    queued_when_ready,
    resolve_outputs,
    scope_output,
    shard_of,
)
from legato.errors import LegatoError
from legato.expressions import evaluate
from legato.model.graph import Graph
from legato.model.instances import ITEM, ITERATION, Place, instance_key, item_key, place_of
from legato.model.runs import StepError
from legato.model.states import RunStatus, StepStatus
from legato.model.steps import (
    GroupStep,
    LoopStep,
    MapStep,
    Step,
    SwitchStep,
)
from legato.payload import dumps, to_json

if TYPE_CHECKING:
    from legato.store.unit import Unit

__all__ = ["Flow", "Inst"]


@dataclass(frozen=True)
class Inst:
    """An instance row, as much of it as deciding needs."""

    run_id: str
    id: int
    key: str
    step_id: str
    scope: str
    kind: str
    idx: int | None = None

    @property
    def is_item(self) -> bool:
        """A map's item (a task call or a scope of steps) or a loop's iteration."""
        return self.idx is not None and self.kind in ("task", ITEM, ITERATION)

    @classmethod
    def of(cls, run_id: str, row: dict[str, Any]) -> Inst:
        return cls(
            run_id=run_id,
            id=row["id"],
            key=row["key"],
            step_id=row["step_id"],
            scope=row["scope"],
            kind=row["kind"],
            idx=row["idx"],
        )


class Flow:
    """Moves runs on within a :class:`~legato.store.unit.Unit`'s transaction: scopes,
    readiness, completion and failure; each kind's own decisions are in its subclass."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.store = unit.store
        self.tx = unit.tx

    def graph(self, run_id: str) -> Graph:
        return self.store.graph(self.tx, self.store.context(self.tx, run_id).spec_hash)

    # -- opening scopes -----------------------------------------------------------------

    def open_scope(
        self,
        run_id: str,
        scope: str,
        place: Place,
        scope_key: str,
        position: int,
        rows: list[NewInstance] | None = None,
        *,
        later: bool = False,
    ) -> None:
        """Create the instances of a scope and its counters; decide the ones ready now.

        With ``later`` (a batch of new runs) rows that need no decision now are held
        back to be written with the batch's in one statement."""
        graph = self.graph(run_id)
        context = self.store.context(self.tx, run_id)
        if rows is None:
            defaults = self.store.run_defaults(self.tx, run_id, graph)
            rows = plan_scope(graph, scope, place, scope_key, defaults, position)
        if not rows:
            self.finish_scope(run_id, scope_key)
            return
        # A task ready at once with the default condition, or a map's task call with
        # a free slot, goes in queued: no second write.
        rows = [
            _with_status(r, StepStatus.QUEUED)
            if r.deps_remaining == 0
            and r.status is StepStatus.WAITING
            and (
                (r.idx is not None and r.kind == "task")
                or queued_when_ready(graph.steps[r.step_id])
            )
            else r
            for r in rows
        ]
        ready = [r.key for r in rows if r.deps_remaining == 0 and r.status is StepStatus.WAITING]
        # What is ready is decided on its rows, read back: those go in now.
        self.unit.insert_instances(run_id, context.root_run_id, rows, later=later and not ready)
        if not self._counts_itself(run_id, scope_key):
            self.unit.create_counters(run_id, scope_key, [r.key for r in rows])
        for row in rows:
            if row.status is StepStatus.QUEUED:
                self.unit.event(run_id, "step.queued", step_id=row.key)
                self.tx.queued(run_id, row.key)
        for inst in self.instances(run_id, ready):
            self.ready(inst)

    def instances(self, run_id: str, keys: list[str]) -> list[Inst]:
        if not keys:
            return []
        rows = self.tx.all("instances", run_id=run_id, keys=self.store._list(keys))
        by_key = {row["key"]: Inst.of(run_id, row) for row in rows}
        return [by_key[k] for k in keys if k in by_key]

    def instance_rows(self, run_id: str, keys: list[str]) -> dict[str, dict[str, Any]]:
        if not keys:
            return {}
        rows = self.tx.all("instances", run_id=run_id, keys=self.store._list(keys))
        return {row["key"]: row for row in rows}

    # -- contexts -------------------------------------------------------------------------

    def context(
        self,
        run_id: str,
        step_id: str,
        place: Place,
        *,
        inner: Place | None = None,
        with_deps: bool = True,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """What ``step_id``'s expressions read at ``place``, and its dependencies' statuses.

        ``inner`` is the place inside the step (an iteration's), for what it reads
        of its own scopes (a loop's ``until``). Without ``with_deps`` (resolving a
        task's inputs, its condition long decided) only what it reads is fetched.
        """
        graph = self.graph(run_id)
        run = self.store.context(self.tx, run_id)
        wanted: dict[str, str] = {}
        dep_ids = set(graph.deps.get(step_id, ())) if with_deps else set()
        for read in graph.reads[step_id] | dep_ids:
            info = graph.info.get(read)
            if info is None:
                continue
            where = inner if inner is not None and step_id in info.chain else place
            wanted[read] = instance_key(graph, read, where)
        around = inner or place
        item_row = around.index_of(MapStep, graph)
        item_at = None
        if item_row is not None:
            compound, index = item_row
            depth = [c for c, _ in around.repeats].index(compound)
            item_at = item_key(compound, index, around.truncated(depth))
        matrix_row = around.matrix_of(graph)
        matrix_at = None
        if matrix_row is not None:
            compound, index = matrix_row
            depth = [c for c, _ in around.repeats].index(compound)
            matrix_at = item_key(compound, index, around.truncated(depth))
        items = {k for k in (item_at, matrix_at) if k}
        keys = sorted(set(wanted.values()) | items)
        rows = self.instance_rows(run_id, keys)
        outputs: dict[str, Any] = {}
        statuses: dict[str, str] = {}
        for read, key in wanted.items():
            row = rows.get(key)
            if row is not None:
                outputs[read] = self.store._json(row["output"])
                statuses[read] = row["status"]
        extra: dict[str, Any] = {}
        if item_at is not None and item_row is not None:
            row = rows.get(item_at)
            extra["item"] = None if row is None else self.store._json(row["item"])
            extra["index"] = item_row[1]
        if matrix_at is not None:
            row = rows.get(matrix_at)
            extra["matrix"] = None if row is None else self.store._json(row["item"])
        loop_at = around.index_of(LoopStep, graph)
        if loop_at is not None:
            extra["iteration"] = loop_at[1]
        variables = self.variables(run_id) if graph.reads_vars.get(step_id) else None
        context = expression_context(
            run.params, outputs, run.run, variables, statuses=statuses, **extra
        )
        deps = {d: statuses.get(d, StepStatus.WAITING.value) for d in graph.deps.get(step_id, ())}
        return context, deps

    def variables(self, run_id: str) -> dict[str, Any]:
        row = self.tx.one("run_variables", id=run_id)
        return (self.store._json(row["variables"]) if row else None) or {}

    # -- a step is ready --------------------------------------------------------------------

    def ready(self, inst: Inst, *, deps_failed: int | None = None) -> None:
        """All of the instance's dependencies have finished: decide what it does now.

        ``deps_failed`` (from the row, when known) is how many of them did not
        complete: a step with the default condition is skipped on it alone.
        """
        graph = self.graph(inst.run_id)
        step = graph.steps[inst.step_id]
        if inst.kind == ITEM:
            self._begin(inst, {"index": inst.idx})
            assert isinstance(step, MapStep)
            place = place_of(inst.key + ".")[0]
            self.open_scope(inst.run_id, step.id, place, inst.key, self._position(inst))
            return
        if inst.kind == ITERATION:
            self._begin(inst, {"iteration": inst.idx})
            place = place_of(inst.key + ".")[0]
            self.open_scope(inst.run_id, step.id, place, inst.key, self._position(inst))
            return
        if inst.is_item:  # a map's item calling its task
            self._queue(inst)
            return
        place = place_of(inst.key)[0]
        if step.when is None and deps_failed:
            runs = False  # every dependency must have completed, and one did not
        else:
            try:
                context, deps = self.context(inst.run_id, inst.step_id, place)
                after = graph.ordering.get(inst.step_id, frozenset())
                runs = condition_holds(
                    step,
                    context,
                    [s for d, s in deps.items() if d not in after],
                    [s for d, s in deps.items() if d in after],
                )
            except Exception as exc:
                self._fail_now(inst, _error(exc, step, "when"))
                return
        if not runs:
            row = self.tx.one("skip_instance", id=inst.id, error=None, now=self.store.clock.now())
            if row is not None:
                self.unit.event(inst.run_id, "step.skipped", step_id=inst.key)
                self.finished(inst, StepStatus.SKIPPED)
            return
        try:
            self._decide(inst, step, context, place)
        except _Failed as failed:
            self._fail_now(inst, failed.error)

    def _queue(self, inst: Inst) -> None:
        self.tx.run("queue_instance", id=inst.id, now=self.store.clock.now())
        self.unit.event(inst.run_id, "step.queued", step_id=inst.key)
        self.tx.queued(inst.run_id, inst.key)

    def _begin(self, inst: Inst, inputs: Any) -> None:
        self.tx.run(
            "begin_instance",
            id=inst.id,
            inputs=None if inputs is None else dumps(inputs),
            now=self.store.clock.now(),
        )
        self.unit.event(inst.run_id, "step.started", step_id=inst.key)

    def _position(self, inst: Inst) -> int:
        """Where the instance's own instances sort: right after it."""
        row = self.instance_rows(inst.run_id, [inst.key]).get(inst.key)
        return 0 if row is None else int(row["position"] or 0)

    def _evaluate(self, step: Step, field: str, value: Any, context: dict[str, Any]) -> Any:
        try:
            return evaluate(value, context)
        except Exception as exc:
            raise _Failed(_error(exc, step, field)) from None

    # -- an instance finished ------------------------------------------------------------------

    def finished(self, inst: Inst, status: StepStatus) -> None:
        """The instance reached a final state: release what waits for it, count its scope down."""
        if inst.is_item:
            self._item_finished(inst)
            return
        graph = self.graph(inst.run_id)
        place = place_of(inst.key)[0]
        successors = graph.successors.get(inst.step_id, ())
        if successors:
            failed = status is not StepStatus.COMPLETED
            after = graph.ordering_successors.get(inst.step_id) if failed else None
            if after:  # those that only run after it are released as if it completed
                self._release(inst, graph, place, [s for s in successors if s in after], False)
                successors = tuple(s for s in successors if s not in after)
            self._release(inst, graph, place, successors, failed)
        self.count_down(inst.run_id, inst.scope, inst.key)

    def _release(
        self,
        inst: Inst,
        graph: Graph,
        place: Place,
        successors: tuple[str, ...] | list[str],
        failed: bool,
    ) -> None:
        """One dependency less for each successor; those with none left are ready.

        ``failed`` counts against the default condition of the successors (their
        ``deps_failed``): they are then skipped, or not queued on release.
        """
        if not successors:
            return
        keys = [instance_key(graph, s, place) for s in successors]
        rows = self.tx.all(
            "release_successors",
            run_id=inst.run_id,
            keys=self.store._list(keys),
            failed=int(failed),
            now=self.store.clock.now(),
        )
        for row in rows:
            if row["status"] == StepStatus.QUEUED:  # released straight to the queue
                self.unit.event(inst.run_id, "step.queued", step_id=row["key"])
                self.tx.queued(inst.run_id, row["key"])
            elif row["deps_remaining"] == 0:
                self.ready(Inst.of(inst.run_id, row), deps_failed=int(row["deps_failed"]))

    def _item_finished(self, inst: Inst) -> None:
        graph = self.graph(inst.run_id)
        step = graph.steps[inst.step_id]
        if isinstance(step, LoopStep):
            return  # an iteration: its loop decides what follows (finish_scope)
        assert isinstance(step, MapStep)
        if step.max_parallel is not None:
            row = self.tx.one("next_gated_item", run_id=inst.run_id, scope=inst.scope)
            if row is not None and self.tx.run("ungate_item", id=row["id"]):
                nxt = Inst.of(inst.run_id, row)
                if nxt.kind == "task":
                    self._queue(nxt)
                else:
                    self.ready(nxt)
        self.count_down(inst.run_id, inst.scope, inst.key)

    def count_down(self, run_id: str, scope: str, key: str) -> None:
        """One instance of ``scope`` less; the one that brings it to none finishes it.

        The counter rows are written when the unit settles (:meth:`settle`), in one
        order for every transaction, so two workers finishing items of one map in
        batches never lock its counter shards in opposite orders (a deadlock).
        """
        if self._counts_itself(run_id, scope):
            self.finish_scope(run_id, scope)
            return
        shards = self.store.shards(self.tx, run_id, scope)
        counter = (run_id, scope, shard_of(key, shards))
        pending = self.unit.pending_counts
        pending[counter] = pending.get(counter, 0) + 1

    def settle(self) -> None:
        """Write the counts down, in (run, scope, shard) order; finish the scopes that
        reach none (which may count down the scopes around them, written in turn)."""
        pending = self.unit.pending_counts
        while pending:
            batch = sorted(pending.items())
            pending.clear()
            for (run_id, scope, shard), count in batch:
                self._decrement(run_id, scope, shard, count)

    def _decrement(self, run_id: str, scope: str, shard: int, count: int) -> None:
        shards = self.store.shards(self.tx, run_id, scope)
        row = self.tx.one("decrement_counter", run_id=run_id, scope=scope, shard=shard, count=count)
        self.counted_down(run_id, scope, shards, row)

    def counted_down(
        self, run_id: str, scope: str, shards: int, row: dict[str, Any] | None
    ) -> None:
        """A counter of the scope was counted down (``row``, as ``decrement_counter``
        returns it): the one that brought the scope to none finishes it."""
        if row is None or row["remaining"] > 0:
            return
        if shards > 1:
            # Several shards reached zero at once in other transactions: whoever holds
            # the latch adds them up, and the last to get it sees the others' work.
            self.tx.one("latch_counter", run_id=run_id, scope=scope)
            total = self.tx.one("counter_remaining", run_id=run_id, scope=scope)
            if total is None or total["remaining"] > 0:
                return
        self.finish_scope(run_id, scope)

    def _counts_itself(self, run_id: str, scope: str) -> bool:
        """A run whose top level is one step needs no counter: that step, finishing
        once, finishes the run (the most common run of all, a single task)."""
        return scope == "" and len(self.graph(run_id).scopes[""].steps) == 1

    def finish_scope(self, run_id: str, scope: str) -> None:
        """Every instance of the scope has finished: it completes with its output."""
        if scope == "":
            self.complete_run(run_id)
            return
        rows = self.instance_rows(run_id, [scope])
        row = rows.get(scope)
        if row is None or row["status"] != StepStatus.RUNNING:
            return  # failed (or cancelled) already: its counters no longer matter
        inst = Inst.of(run_id, row)
        if row["error"] is not None:  # failing: its last reacting steps are done
            failing = StepError.from_json(self.store._json(row["error"]))
            self._fail_now(inst, failing or StepError("Error", "a step inside it failed"))
            return
        graph = self.graph(run_id)
        step = graph.steps[inst.step_id]
        try:
            if inst.kind == ITERATION:
                assert isinstance(step, LoopStep)
                self._iteration_finished(inst, step)
            elif inst.kind == ITEM:
                assert isinstance(step, MapStep)
                self._complete(inst, self._scope_output(inst, step, step.id, step.output))
            elif isinstance(step, MapStep):
                items = self.tx.all("scope_items", run_id=run_id, scope=scope)
                self._complete(inst, [self.store._json(r["output"]) for r in items])
            elif isinstance(step, SwitchStep):
                started = self.store._json(row["inputs"]) or {}
                self._complete(inst, self._scope_output(inst, step, started.get("branch"), None))
            elif isinstance(step, GroupStep):
                self._complete(inst, self._scope_output(inst, step, step.id, step.output))
        except _Failed as failed:
            self._fail_now(inst, failed.error)

    def _scope_output(self, inst: Inst, step: Step, scope: str | None, output: Any) -> Any:
        """What a finished scope instance outputs: ``output``, or its last steps' outputs."""
        graph = self.graph(inst.run_id)
        if scope is None:
            return None
        inner = (
            place_of(inst.key + ".")[0] if inst.kind in (ITEM, ITERATION) else place_of(inst.key)[0]
        )
        if output is not None:
            context, _ = self.context(inst.run_id, step.id, place_of(inst.key)[0], inner=inner)
            return self._evaluate(step, "output", output, context)
        sinks = graph.scopes[scope].sinks
        rows = self.instance_rows(inst.run_id, [inner.key(s) for s in sinks])
        outputs = {
            s: self.store._json(rows[inner.key(s)]["output"]) for s in sinks if inner.key(s) in rows
        }
        return scope_output(sinks, outputs)

    def complete_run(self, run_id: str) -> None:
        """The run's last instance finished: it completes with its outputs."""
        status = self.unit.lock_run(run_id)
        if status is None or status.finished:
            return
        failing = self._failing_error(run_id, "")
        if failing is not None:  # a step failed; those reacting to it have run
            self.unit.finish_run(run_id, RunStatus.FAILED, error=failing)
            return
        graph = self.graph(run_id)
        context = self.store.context(self.tx, run_id)
        try:
            rows = self.instance_rows(run_id, sorted(graph.output_reads))
            reads = {k: self.store._json(r["output"]) for k, r in rows.items()}
            statuses = {k: r["status"] for k, r in rows.items()}
            variables = self.variables(run_id) if graph.outputs_read_vars else None
            outputs = resolve_outputs(
                graph,
                expression_context(
                    context.params, reads, context.run, variables, statuses=statuses
                ),
            )
            plain, _ = to_json(outputs, what="run outputs", max_bytes=self.store.max_payload_bytes)
        except Exception as exc:  # whatever the outputs raise fails the run, not the worker
            self.unit.finish_run(run_id, RunStatus.FAILED, error=StepError.of(exc))
            return
        self.unit.finish_run(run_id, RunStatus.COMPLETED, outputs=plain)

    # -- completing and failing instances --------------------------------------------------------

    def _complete_row(self, inst: Inst, output: Any) -> bool:
        try:
            _, text = to_json(
                output, what=f"step {inst.key!r} output", max_bytes=self.store.max_payload_bytes
            )
        except Exception as exc:
            raise _Failed(StepError.of(exc)) from None
        row = self.tx.one(
            "complete_instance", id=inst.id, output=text, inputs=None, now=self.store.clock.now()
        )
        if row is None:
            return False
        self.unit.event(inst.run_id, "step.completed", step_id=inst.key)
        return True

    def _complete(self, inst: Inst, output: Any) -> None:
        try:
            done = self._complete_row(inst, output)
        except _Failed as failed:
            self._fail_now(inst, failed.error)
            return
        if done:
            self.finished(inst, StepStatus.COMPLETED)

    def _fail_now(self, inst: Inst, error: StepError) -> None:
        """Fail an instance no worker runs (its decision failed), then what follows from it."""
        row = self.tx.one(
            "fail_instance",
            id=inst.id,
            error=dumps(error.to_json()),
            failed=1,
            inputs=None,
            now=self.store.clock.now(),
        )
        if row is None:
            return
        self.unit.event(
            inst.run_id, "step.failed", step_id=inst.key, details={"error": error.to_json()}
        )
        self.unit.outcome.failures.append(_failure(inst, error))
        self.failed(inst, error)

    def failed(self, inst: Inst, error: StepError) -> None:
        """An instance failed for good (legato.store.failing)."""
        raise NotImplementedError

    def _failing_error(self, run_id: str, scope: str) -> StepError | None:
        """The first error of a failing scope (legato.store.failing)."""
        raise NotImplementedError

    # -- what each kind does (legato.store.progress) -----------------------------------------

    def _decide(self, inst: Inst, step: Step, context: dict[str, Any], place: Place) -> None:
        raise NotImplementedError

    def _iteration_finished(self, inst: Inst, step: LoopStep) -> None:
        raise NotImplementedError


class _Failed(LegatoError):
    """A decision about a step failed (a bad expression, a list that is none): fail the step."""

    def __init__(self, error: StepError) -> None:
        super().__init__(error.message)
        self.error = error


def _error(exc: BaseException, step: Step, field: str) -> StepError:
    if isinstance(exc, _Failed):
        return exc.error
    message = str(exc) if isinstance(exc, LegatoError) else f"{type(exc).__name__}: {exc}"
    if not message.startswith(f"step {step.id!r}"):
        message = f"step {step.id!r} {field}: {message}"
    return StepError(type(exc).__name__, message)


def _inside(error: StepError, key: str) -> StepError:
    return StepError(error.type, error.message, error.traceback, step=error.step or key)


def _plain(value: Any) -> Any:
    try:
        plain, _ = to_json(value, what="value", max_bytes=None)
    except Exception:
        return repr(value)
    return plain


def _with_status(row: NewInstance, status: StepStatus) -> NewInstance:
    from dataclasses import replace

    return replace(row, status=status)


def _failure(inst: Inst, error: StepError) -> Any:
    from legato.store.base import AttemptFailure

    return AttemptFailure(inst.run_id, inst.key, 0, error, None)
