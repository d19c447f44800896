"""Tasks the operation and context tests run; names start with ``flow_ops.`` to stay unique."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from legato import Context, task

_calls: dict[str, list[Any]] = {}
_lock = threading.Lock()
#: step keys -> set once the task began (a test waits for it)
started: dict[str, threading.Event] = {}


def calls(key: str) -> list[Any]:
    """The arguments each call counted under ``key`` was made with."""
    with _lock:
        return list(_calls.get(key, []))


def _count(key: str, value: Any) -> None:
    with _lock:
        _calls.setdefault(key, []).append(value)


def began(key: str) -> threading.Event:
    with _lock:
        return started.setdefault(key, threading.Event())


@task(name="flow_ops.echo")
def echo(x: Any = None) -> Any:
    return x


@task(name="flow_ops.counted")
def counted(key: str, x: Any = None) -> Any:
    _count(key, x)
    return x


@task(name="flow_ops.fixable")
def fixable(key: str, x: Any, fixed_when: str) -> Any:
    """Fails until the file ``fixed_when`` exists: the code "fixed" between two tries."""
    _count(key, x)
    if not Path(fixed_when).exists():
        raise RuntimeError(f"not fixed yet (called with {x!r})")
    return {"fixed": x}


@task(name="flow_ops.reports")
def reports(n: int, ctx: Context) -> int:
    for i in range(1, n + 1):
        ctx.progress(i, n, message=f"row {i}")
    ctx.heartbeat({"last": n})
    return n


@task(name="flow_ops.whereabouts")
def whereabouts(x: Any, context: Context) -> dict[str, Any]:
    context.logger.info("running %s", context.step_id)
    return {
        "x": x,
        "run_id": context.run_id,
        "step_id": context.step_id,
        "attempt": context.attempt,
        "index": context.index,
        "item": context.item,
        "iteration": context.iteration,
        "logger": context.logger.name,
    }


@task(name="flow_ops.polls")
def polls(key: str, ctx: Context) -> str:
    """A sync task that stops when asked: it polls ``ctx.cancelled``."""
    began(key).set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ctx.cancelled:
            raise RuntimeError("stopped: asked to")
        time.sleep(0.005)
    return "never asked"


@task(name="flow_ops.waits_async")
async def waits_async(key: str) -> str:
    """An async task that would wait long: only a real cancellation ends it early."""
    began(key).set()
    try:
        await asyncio.sleep(20)
    except asyncio.CancelledError:
        _count(key, "cancelled")
        raise
    return "never cancelled"


ALL_TASKS = (
    "flow_ops.echo",
    "flow_ops.counted",
    "flow_ops.fixable",
    "flow_ops.reports",
    "flow_ops.whereabouts",
    "flow_ops.polls",
    "flow_ops.waits_async",
)
