"""Tasks the loop, sub-workflow, terminate and variable tests run; names start with
``flow_loops.`` to stay unique."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from legato import task


class Boom(Exception):
    """What the failing tasks raise."""


@task(name="flow_loops.echo")
def echo(x: Any = None) -> Any:
    return x


@task(name="flow_loops.tag")
def tag(label: str, x: Any = None) -> dict[str, Any]:
    """Say which step ran, and with what."""
    return {"label": label, "x": x}


@task(name="flow_loops.add")
def add(a: int, b: int) -> int:
    return a + b


@task(name="flow_loops.square")
def square(x: int) -> int:
    return x * x


@task(name="flow_loops.fail")
def fail(message: str = "boom") -> None:
    raise Boom(message)


@task(name="flow_loops.fail_at")
def fail_at(n: int, bad: int) -> int:
    """Fails when ``n`` is ``bad``; returns ``n`` otherwise."""
    if n == bad:
        raise Boom(f"iteration {n} is bad")
    return n


@task(name="flow_loops.fails_first_call")
def fails_first_call(path: str, x: Any = None) -> dict[str, Any]:
    """Counts its calls in the file at ``path`` (persistent across runs); the first fails."""
    counter = Path(path)
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    if calls == 1:
        raise Boom(f"call {calls} failed")
    return {"calls": calls, "x": x}


#: the names of every task here, for store-level claims
ALL_TASKS = (
    "flow_loops.echo",
    "flow_loops.tag",
    "flow_loops.add",
    "flow_loops.square",
    "flow_loops.fail",
    "flow_loops.fail_at",
    "flow_loops.fails_first_call",
)
