"""The dependency graphs of a spec: one per scope, computed once per spec and cached.

A scope is the run's top level, a map's items, a loop's body, a switch's
branch or a group. Within a scope, a step waits for its ``needs``, for every
step of the scope its expressions read (a data reference is a dependency) and
for its ``after`` steps, which order it without being needed (even when it
reads their status): their failure does not stop it (:attr:`Graph.ordering`). A step
deep inside a compound that reads a step of an outer scope makes the
compound at that scope wait for it, so whatever a step reads has finished
before its scope starts. The graphs give each step its successors and the
count of dependencies it starts with: finishing a step touches its
successors only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from legato.errors import CycleError
from legato.model.steps import LoopStep, MapStep, Step

if TYPE_CHECKING:
    from legato.model.spec import WorkflowSpec

__all__ = ["TOP", "Graph", "ScopeGraph", "StepInfo", "walk"]

#: the name of the run's own scope
TOP = ""


@dataclass(frozen=True)
class StepInfo:
    """Where a step sits: its scope, and the compounds around it."""

    step: Step
    #: the scope it belongs to: ``""``, a map, loop or group id, or ``<switch>:case:<name>``
    scope: str
    #: the compound steps around it, outermost first
    chain: tuple[str, ...]
    #: the map and loop steps among ``chain``: each repeats it, once per item or iteration
    repeats: tuple[str, ...]

    @property
    def parent(self) -> str | None:
        return self.chain[-1] if self.chain else None


@dataclass(frozen=True)
class ScopeGraph:
    """The steps of one scope with their dependencies."""

    name: str
    steps: tuple[str, ...]
    #: step id -> ids it waits for, in spec order
    deps: dict[str, tuple[str, ...]]
    #: step id -> ids that wait for it, in spec order
    successors: dict[str, tuple[str, ...]]
    #: a topological order (stable: spec order where free to choose)
    order: tuple[str, ...]

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(s for s in self.order if not self.deps[s])

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(s for s in self.order if not self.successors[s])


@dataclass(frozen=True)
class Graph:
    #: not compared: the spec caches its graph, so comparing it back would recurse
    spec: WorkflowSpec = field(compare=False, repr=False)
    #: every step of every scope, by id
    steps: dict[str, Step]
    info: dict[str, StepInfo]
    scopes: dict[str, ScopeGraph]
    #: step id -> ids of the steps its expressions read (any scope)
    reads: dict[str, frozenset[str]]
    #: step id -> whether its expressions read ``vars``
    reads_vars: dict[str, bool]
    #: steps whose outputs the workflow outputs read
    output_reads: frozenset[str]
    #: whether the workflow outputs read ``vars``
    outputs_read_vars: bool
    #: step id -> ids it waits for (within its scope), every scope's steps
    deps: dict[str, tuple[str, ...]]
    #: step id -> ids that wait for it (within its scope), every scope's steps
    successors: dict[str, tuple[str, ...]]
    #: step id -> the secret names its task call reads; only steps that read any
    secrets: dict[str, frozenset[str]] = field(default_factory=dict)
    #: step id -> the dependencies it only runs after (``after`` and neither needed nor
    #: read): how they ended does not count for its default condition. Only steps with some.
    ordering: dict[str, frozenset[str]] = field(default_factory=dict)
    #: step id -> the successors that only run after it (the reverse of ``ordering``)
    ordering_successors: dict[str, frozenset[str]] = field(default_factory=dict)

    # -- the top-level view (what plain task workflows use) -------------------------

    @property
    def order(self) -> tuple[str, ...]:
        return self.scopes[TOP].order

    @property
    def roots(self) -> tuple[str, ...]:
        return self.scopes[TOP].roots

    def scope_of(self, step_id: str) -> ScopeGraph:
        return self.scopes[self.info[step_id].scope]

    @classmethod
    def of(cls, spec: WorkflowSpec) -> Graph:
        from legato.expressions import references

        info = {i.step.id: i for i in walk(spec.steps)}
        steps = {step_id: i.step for step_id, i in info.items()}
        members: dict[str, list[str]] = {}
        for step_id, i in info.items():
            members.setdefault(i.scope, []).append(step_id)
        members.setdefault(TOP, [])
        for step in steps.values():
            for scope in step.scopes:
                members.setdefault(scope, [])
        reads: dict[str, frozenset[str]] = {}
        reads_vars: dict[str, bool] = {}
        secrets: dict[str, frozenset[str]] = {}
        wanted: dict[str, dict[str, None]] = {step_id: {} for step_id in steps}
        for step_id, i in info.items():
            outer = _refs(references, i.step.expressions())
            inner = _refs(references, i.step.inner_expressions())
            item = _refs(references, _item_expressions(i.step))
            reads[step_id] = frozenset((outer | inner | item).steps)
            reads_vars[step_id] = "vars" in (outer | inner | item).roots
            if (outer | item).secrets:
                secrets[step_id] = (outer | item).secrets
            for need in i.step.needs:
                wanted[step_id][need] = None
            # A step it runs after and reads the status of only stays an order.
            ordered = (outer | item).status_only & set(i.step.after)
            for read in sorted((outer | item).steps - ordered):
                _depend(info, step_id, read, wanted)
            for read in sorted(inner.steps):
                # The compound's own scopes finish before these are read: only
                # what lies outside it is a dependency.
                if step_id not in info.get(read, i).chain:
                    _depend(info, step_id, read, wanted)
        only_after: dict[str, set[str]] = {}
        for step_id, i in info.items():
            for a in i.step.after:
                if a not in wanted[step_id]:
                    only_after.setdefault(step_id, set()).add(a)
                    wanted[step_id][a] = None
        scopes = {}
        for name, ids in members.items():
            position = {s: n for n, s in enumerate(ids)}
            deps = {s: tuple(d for d in wanted[s] if d in position and d != s) for s in ids}
            successors: dict[str, list[str]] = {s: [] for s in ids}
            for s in ids:
                for d in deps[s]:
                    successors[d].append(s)
            order = _topological_order(spec.name, ids, deps, successors)
            scopes[name] = ScopeGraph(
                name=name,
                steps=tuple(ids),
                deps=deps,
                successors={k: tuple(v) for k, v in successors.items()},
                order=order,
            )
        all_deps = {k: v for g in scopes.values() for k, v in g.deps.items()}
        ordering = {
            s: kept
            for s, after in only_after.items()
            if (kept := frozenset(after & set(all_deps[s])))
        }
        return cls(
            spec=spec,
            steps=steps,
            info=info,
            scopes=scopes,
            reads=reads,
            reads_vars=reads_vars,
            output_reads=references(spec.outputs).steps,
            outputs_read_vars="vars" in references(spec.outputs).roots,
            deps=all_deps,
            successors={k: v for g in scopes.values() for k, v in g.successors.items()},
            secrets=secrets,
            ordering=ordering,
            ordering_successors=_reverse(ordering),
        )


def walk(steps: list[Step], scope: str = TOP, chain: tuple[Step, ...] = ()) -> Iterator[StepInfo]:
    """Every step at every depth, outer scopes first, with where it sits."""
    ids = tuple(s.id for s in chain)
    repeats = tuple(s.id for s in chain if isinstance(s, MapStep | LoopStep))
    for step in steps:
        yield StepInfo(step=step, scope=scope, chain=ids, repeats=repeats)
    for step in steps:
        for name, inner in step.scopes.items():
            yield from walk(inner, name, (*chain, step))


def _reverse(edges: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for step_id, targets in edges.items():
        for target in targets:
            found.setdefault(target, set()).add(step_id)
    return {k: frozenset(v) for k, v in found.items()}


def _item_expressions(step: Step) -> dict[str, Any]:
    return step.item_expressions() if isinstance(step, MapStep) and step.task else {}


def _refs(references: Any, fields: dict[str, Any]) -> Any:
    from legato.expressions import References

    found = References()
    for value in fields.values():
        found = found | references(value)
    return found


def _depend(
    info: dict[str, StepInfo], step_id: str, read: str, wanted: dict[str, dict[str, None]]
) -> None:
    """Make ``step_id`` (or the compound around it in ``read``'s scope) wait for ``read``."""
    target = info.get(read)
    if target is None:
        return  # reported by the spec's checks
    holder = step_id
    while info[holder].scope != target.scope:
        parent = info[holder].parent
        if parent is None:
            return  # not in an enclosing scope: reported by the spec's checks
        holder = parent
    if holder != read:
        wanted[holder][read] = None


def _topological_order(
    workflow: str,
    ids: list[str],
    deps: dict[str, tuple[str, ...]],
    successors: dict[str, list[str]],
) -> tuple[str, ...]:
    remaining = {step_id: len(deps[step_id]) for step_id in ids}
    ready = deque(step_id for step_id in ids if remaining[step_id] == 0)
    order: list[str] = []
    while ready:
        step_id = ready.popleft()
        order.append(step_id)
        for nxt in successors[step_id]:
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(ids):
        cycle = _find_cycle([i for i in ids if remaining[i] > 0], deps)
        raise CycleError(f"workflow {workflow!r}: steps form a cycle: " + " -> ".join(cycle), cycle)
    return tuple(order)


def _find_cycle(candidates: list[str], deps: dict[str, tuple[str, ...]]) -> list[str]:
    """Walk dependencies from a step left in the cycle until one repeats."""
    inside = set(candidates)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = candidates[0]
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(d for d in deps[node] if d in inside)
    cycle = [*path[seen[node] :], node]
    cycle.reverse()  # read in execution direction: a -> b means b needs a
    return cycle
