"""The dependency graph of a spec, computed once per spec and cached by the worker.

Dependencies are a step's ``needs`` plus every step its inputs read (a data
reference is a dependency). The graph gives each step's successors and the
remaining-dependency count it starts with, which is all the hot path needs:
completing a step touches its successors only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from legato.errors import CycleError

if TYPE_CHECKING:
    from legato.model.spec import StepSpec, WorkflowSpec

__all__ = ["Graph"]


@dataclass(frozen=True)
class Graph:
    #: not compared: the spec caches its graph, so comparing it back would recurse
    spec: WorkflowSpec = field(compare=False, repr=False)
    steps: dict[str, StepSpec]
    #: step id -> ids it waits for (needs + data references), in spec order
    deps: dict[str, tuple[str, ...]]
    #: step id -> ids that wait for it, in spec order
    successors: dict[str, tuple[str, ...]]
    #: step id -> ids whose outputs its inputs read
    reads: dict[str, frozenset[str]]
    #: steps whose outputs the workflow outputs read
    output_reads: frozenset[str]
    #: a topological order (stable: spec order where free to choose)
    order: tuple[str, ...]

    @classmethod
    def of(cls, spec: WorkflowSpec) -> Graph:
        from legato.expressions import references

        steps = {s.id: s for s in spec.steps}
        position = {s.id: i for i, s in enumerate(spec.steps)}
        reads: dict[str, frozenset[str]] = {}
        deps: dict[str, tuple[str, ...]] = {}
        for step in spec.steps:
            read = references(step.inputs).steps | references(step.args).steps
            reads[step.id] = frozenset(read)
            merged = dict.fromkeys(step.needs)
            merged.update(dict.fromkeys(sorted(read & position.keys(), key=position.__getitem__)))
            deps[step.id] = tuple(merged)
        successors: dict[str, list[str]] = {s.id: [] for s in spec.steps}
        for step in spec.steps:
            for dep in deps[step.id]:
                successors[dep].append(step.id)
        order = _topological_order(spec.name, [s.id for s in spec.steps], deps, successors)
        return cls(
            spec=spec,
            steps=steps,
            deps=deps,
            successors={k: tuple(v) for k, v in successors.items()},
            reads=reads,
            output_reads=references(spec.outputs).steps,
            order=order,
        )

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(step_id for step_id in self.order if not self.deps[step_id])


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
