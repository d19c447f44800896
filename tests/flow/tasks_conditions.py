"""Tasks the condition and switch tests run; names start with ``flow_conditions.``."""

from __future__ import annotations

import time
from typing import Any

import legato


class Boom(ValueError):
    """What :func:`fail` raises, so a test can tell it from any other error."""


@legato.task(name="flow_conditions.echo")
def echo(x: Any = None) -> Any:
    return x


@legato.task(name="flow_conditions.tag")
def tag(label: str, x: Any = None) -> dict[str, Any]:
    """Say which step ran, and with what."""
    return {"label": label, "x": x}


@legato.task(name="flow_conditions.add")
def add(a: int, b: int) -> int:
    return a + b


@legato.task(name="flow_conditions.fail")
def fail(message: str = "boom") -> None:
    raise Boom(message)


@legato.task(name="flow_conditions.maybe_fail")
def maybe_fail(fail: bool, message: str = "boom") -> str:
    """Fail when told to; otherwise say so."""
    if fail:
        raise Boom(message)
    return "fine"


@legato.task(name="flow_conditions.hold")
def hold(seconds: float, label: str = "held") -> str:
    """Keep a worker slot busy for a while, then say which step it was."""
    time.sleep(seconds)
    return label


@legato.task(name="flow_conditions.fail_at")
def fail_at(x: Any, bad: Any, message: str = "boom") -> Any:
    """Fail for one value; pass the others through."""
    if x == bad:
        raise Boom(f"{message} at {x!r}")
    return x
