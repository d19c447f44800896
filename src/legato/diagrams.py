"""A workflow as a diagram: Mermaid flowcharts and Graphviz DOT.

Each kind of step has a shape of its own, so a reader tells a map from a task
at a glance; a compound step (switch, group, map, loop) is drawn with the steps
it holds in a box beside it, linked by a dotted edge (labelled with the case,
for a switch's branches). Edges are the dependencies within each scope; an
edge that only orders (``after``) is dashed and labelled ``after``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from legato.model.graph import Graph
from legato.model.spec import WorkflowSpec
from legato.model.steps import (
    GroupStep,
    LoopStep,
    MapStep,
    SignalStep,
    SleepStep,
    Step,
    SubWorkflowStep,
    SwitchStep,
    TaskStep,
)

__all__ = ["to_dot", "to_mermaid"]

#: Mermaid node shapes by kind: (opening, closing)
_MERMAID_SHAPES = {
    "task": ("[", "]"),
    "switch": ("{", "}"),
    "group": ("(", ")"),
    "map": ("[[", "]]"),
    "loop": ("{{", "}}"),
    "sub_workflow": ("[/", "/]"),
    "sleep": ("((", "))"),
    "wait_for_signal": (">", "]"),
    "terminate": ("([", "])"),
    "set_vars": ("[/", "\\]"),
}

#: Graphviz shapes by kind
_DOT_SHAPES = {
    "task": "box",
    "switch": "diamond",
    "group": "folder",
    "map": "box3d",
    "loop": "hexagon",
    "sub_workflow": "component",
    "sleep": "circle",
    "wait_for_signal": "cds",
    "terminate": "doubleoctagon",
    "set_vars": "parallelogram",
}


def to_mermaid(spec: WorkflowSpec) -> str:
    """The workflow as a Mermaid flowchart (``flowchart TD``)."""
    graph = spec.graph
    ids = _node_ids(graph)
    lines = ["flowchart TD"]

    def scope(name: str, depth: int) -> None:
        pad = "    " * depth
        for step_id in graph.scopes[name].order:
            step = graph.steps[step_id]
            opening, closing = _MERMAID_SHAPES[step.kind]
            label = _label(step).replace('"', "#quot;").replace("\n", "<br/>")
            lines.append(f'{pad}{ids[step_id]}{opening}"{label}"{closing}')
            for inner, title in _inner_scopes(step):
                box = f"{ids[step_id]}_{_safe(inner)}"
                lines.append(f'{pad}subgraph {box}["{title}"]')
                scope(inner, depth + 1)
                lines.append(f"{pad}end")
                for root in graph.scopes[inner].roots:
                    edge_label = (
                        f"|{_case_label(step, inner)}|" if isinstance(step, SwitchStep) else ""
                    )
                    lines.append(f"{pad}{ids[step_id]} -.->{edge_label} {ids[root]}")
        for step_id in graph.scopes[name].order:
            after = graph.ordering.get(step_id, frozenset())
            for dep in graph.scopes[name].deps[step_id]:
                arrow = "-. after .->" if dep in after else "-->"
                lines.append(f"{pad}{ids[dep]} {arrow} {ids[step_id]}")

    scope("", 1)
    return "\n".join(lines) + "\n"


def to_dot(spec: WorkflowSpec) -> str:
    """The workflow as a Graphviz ``digraph`` (render with ``dot -Tsvg``)."""
    graph = spec.graph
    ids = _node_ids(graph)
    lines = [
        f"digraph {_quote(spec.name)} {{",
        "    rankdir=TB;",
        '    node [fontname="Helvetica"];',
    ]

    def scope(name: str, depth: int) -> None:
        pad = "    " * depth
        for step_id in graph.scopes[name].order:
            step = graph.steps[step_id]
            lines.append(
                f"{pad}{ids[step_id]} [label={_quote(_label(step))}, "
                f"shape={_DOT_SHAPES[step.kind]}];"
            )
            for inner, title in _inner_scopes(step):
                lines.append(f"{pad}subgraph cluster_{ids[step_id]}_{_safe(inner)} {{")
                lines.append(f"{pad}    label={_quote(title)}; style=dashed;")
                scope(inner, depth + 1)
                lines.append(f"{pad}}}")
                for root in graph.scopes[inner].roots:
                    label = (
                        f", label={_quote(_case_label(step, inner))}"
                        if isinstance(step, SwitchStep)
                        else ""
                    )
                    lines.append(f"{pad}{ids[step_id]} -> {ids[root]} [style=dotted{label}];")
        for step_id in graph.scopes[name].order:
            after = graph.ordering.get(step_id, frozenset())
            for dep in graph.scopes[name].deps[step_id]:
                style = ' [style=dashed, label="after"]' if dep in after else ""
                lines.append(f"{pad}{ids[dep]} -> {ids[step_id]}{style};")

    scope("", 1)
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- helpers ---------------------------------------------------------------------------------


def _node_ids(graph: Graph) -> dict[str, str]:
    """Step ids may hold ``-``, which diagram languages read as edges: number the nodes."""
    return {step_id: f"n{i}" for i, step_id in enumerate(graph.steps)}


def _inner_scopes(step: Step) -> Iterator[tuple[str, str]]:
    """The scopes a compound step holds, with the title of their box."""
    for name in step.scopes:
        if isinstance(step, SwitchStep):
            yield name, f"{step.id}: {_case_label(step, name)}"
        elif isinstance(step, MapStep):
            yield name, f"{step.id}: each item"
        elif isinstance(step, LoopStep):
            yield name, f"{step.id}: each iteration"
        elif isinstance(step, GroupStep):
            yield name, f"{step.id}: its steps"
        else:  # pragma: no cover - no other kind holds steps
            yield name, step.id


def _case_label(step: SwitchStep, scope: str) -> str:
    if scope.endswith(":default"):
        return "default"
    return "case " + scope.split(":case:", 1)[1]


def _label(step: Step) -> str:
    """The step's id and, on a second line, what it does."""
    if isinstance(step, TaskStep):
        what = step.task
    elif isinstance(step, MapStep):
        what = f"map {step.task}" if step.task else "map"
        if step.max_parallel:
            what += f" (max {step.max_parallel})"
    elif isinstance(step, LoopStep):
        what = f"loop (max {step.max_iterations})"
    elif isinstance(step, SubWorkflowStep):
        if step.workflow is not None:
            target = step.workflow + (f"@{step.version}" if step.version else "")
        else:
            target = str((step.spec or {}).get("name", ""))
        what = f"sub-workflow {target}"
    elif isinstance(step, SleepStep):
        what = "sleep" if step.until is not None else f"sleep {step.duration}"
    elif isinstance(step, SignalStep):
        what = f"wait for signal {step.signal}"
    else:
        what = step.kind.replace("_", " ")
    if step.when is not None:
        what += f"\nif {_expression_text(step.when)}"
    return f"{step.id}\n{what}"


def _expression_text(value: object) -> str:
    """``${{ x > 1 }}`` as ``x > 1``: the condition as a reader writes it."""
    text = str(value).strip()
    if text.startswith("${{") and text.endswith("}}") and text.count("${{") == 1:
        return text[3:-2].strip()
    return text


def _safe(scope: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in scope)


def _quote(text: str) -> str:
    return json.dumps(text)  # a DOT string: double quotes, backslash escapes
