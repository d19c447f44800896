"""Step instances: how the rows of an unfolding run are keyed.

A spec step runs once per repetition of the maps and loops around it, so an
instance's key is the step id prefixed by one ``<compound>[<n>].`` per
enclosing map item or loop iteration: ``load``, ``fetch[3]`` (item 3 of the
map ``fetch``), ``retry_loop[2].call``, ``outer[0].inner[5].call``. A switch or a
group adds nothing (its steps run once). Keys are unique within a run, so
unfolding the same instance twice (a replayed transaction) is refused by the
database rather than done twice.

A *scope instance* is what counts and finishes the instances inside it: the
run itself (``""``), a map (its items), a map item with steps of its own, a
loop iteration, a switch (its chosen branch), a group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from legato.model.graph import Graph
from legato.model.steps import GroupStep, LoopStep, MapStep, SwitchStep

__all__ = ["ITEM", "ITERATION", "Place", "instance_key", "item_key", "place_of"]

#: kinds of the rows that only hold a scope: a map item with steps, a loop iteration
ITEM = "item"
ITERATION = "iteration"

_COMPONENT = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)\[(\d+)\]\.")


@dataclass(frozen=True)
class Place:
    """Where an instance sits: the repetitions around it."""

    #: (compound id, index) of each enclosing map item or loop iteration, outermost first
    repeats: tuple[tuple[str, int], ...] = ()

    @property
    def prefix(self) -> str:
        return "".join(f"{c}[{i}]." for c, i in self.repeats)

    def key(self, step_id: str) -> str:
        return self.prefix + step_id

    def inside(self, compound: str, index: int) -> Place:
        return Place((*self.repeats, (compound, index)))

    def truncated(self, depth: int) -> Place:
        return Place(self.repeats[:depth])

    def index_of(self, compound_kind: type, graph: Graph) -> tuple[str, int] | None:
        """The nearest enclosing repetition by a compound of that kind (map or loop)."""
        for compound, index in reversed(self.repeats):
            if isinstance(graph.steps.get(compound), compound_kind):
                return compound, index
        return None

    def matrix_of(self, graph: Graph) -> tuple[str, int] | None:
        """The nearest enclosing item of a map over a job's matrix (``matrix`` reads it)."""
        for compound, index in reversed(self.repeats):
            step = graph.steps.get(compound)
            if isinstance(step, MapStep) and step.matrix:
                return compound, index
        return None


def place_of(key: str) -> tuple[Place, str]:
    """``outer[0].inner[5].call`` -> (its place, ``call``)."""
    repeats = []
    pos = 0
    while True:
        match = _COMPONENT.match(key, pos)
        if match is None:
            break
        repeats.append((match.group(1), int(match.group(2))))
        pos = match.end()
    return Place(tuple(repeats)), key[pos:]


def instance_key(graph: Graph, step_id: str, place: Place) -> str:
    """The key of ``step_id`` seen from ``place`` (which may be deeper than the step)."""
    depth = len(graph.info[step_id].repeats)
    return place.truncated(depth).key(step_id)


def item_key(compound: str, index: int, place: Place) -> str:
    """The key of a map item or loop iteration row: ``fetch[3]``."""
    return f"{place.prefix}{compound}[{index}]"


def scope_key(graph: Graph, step_id: str, place: Place) -> str:
    """The key of the scope instance an instance of ``step_id`` at ``place`` belongs to."""
    parent = graph.info[step_id].parent
    if parent is None:
        return ""
    compound = graph.steps[parent]
    if isinstance(compound, MapStep | LoopStep):
        index = place.repeats[-1][1]
        return item_key(parent, index, place.truncated(len(place.repeats) - 1))
    assert isinstance(compound, SwitchStep | GroupStep)
    return place.key(parent)
