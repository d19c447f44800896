"""Tasks the sleep and signal tests run; names start with ``flow_waits.`` to stay unique."""

from __future__ import annotations

from typing import Any

from legato import task


@task(name="flow_waits.echo")
def echo(x: Any = None) -> Any:
    return x


@task(name="flow_waits.tag")
def tag(label: str, x: Any = None) -> dict[str, Any]:
    """Say which step ran, and with what."""
    return {"label": label, "x": x}


ALL_TASKS = ("flow_waits.echo", "flow_waits.tag")
