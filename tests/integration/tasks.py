"""Tasks the in-process integration tests run. Names start with ``integration.``.

Their state lives in this module, keyed by a ``key`` input each test makes
unique, so tests read what the tasks saw without sharing anything else.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

from legato import task

_lock = threading.Lock()
_calls: dict[str, int] = {}
_gates: dict[str, threading.Event] = {}
_notes: dict[str, list[Any]] = {}


def bump(key: str) -> int:
    with _lock:
        _calls[key] = _calls.get(key, 0) + 1
        return _calls[key]


def calls(key: str) -> int:
    with _lock:
        return _calls.get(key, 0)


def gate(key: str) -> threading.Event:
    with _lock:
        return _gates.setdefault(key, threading.Event())


def note(key: str, value: Any) -> None:
    with _lock:
        _notes.setdefault(key, []).append(value)


def notes(key: str) -> list[Any]:
    with _lock:
        return list(_notes.get(key, []))


@task(name="integration.stuck_first", timeout=0.5, retries=1, retry_delay=0)
def stuck_first(key: str) -> str:
    """The first attempt blocks until the test opens the gate; later ones return at once."""
    n = bump(key)
    if n == 1:
        gate(key).wait(60)
        note(key, "first attempt returned")
    return f"attempt {n}"


@task(name="integration.quick")
def quick(key: str, x: int = 0) -> int:
    bump(key)
    return x + 1


@task(name="integration.hold")
def hold(key: str, seconds: float) -> float:
    """Work for ``seconds`` (longer than the lease in the heartbeat tests)."""
    bump(key)
    started = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - started


@task(name="integration.async_where")
async def async_where() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    return {"thread": threading.current_thread().name, "loop_running": loop.is_running()}


@task(name="integration.async_slow", timeout=0.3)
async def async_slow(key: str) -> str:
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        note(key, "cancelled")
        raise
    return "not cancelled"


@task(name="integration.async_span")
async def async_span(key: str, seconds: float) -> None:
    """Sleep on the loop; note when this call started and ended."""
    started = time.monotonic()
    await asyncio.sleep(seconds)
    note(key, (started, time.monotonic()))


# -- random DAGs -------------------------------------------------------------------

_sequence = itertools.count(1)


def tick() -> int:
    """The next number of one sequence shared by every task in this process."""
    with _lock:
        return next(_sequence)


def dag_value(step_id: str, reads: dict[str, int]) -> int:
    """What a DAG step computes from its id and the values it reads."""
    return ((int(step_id.removeprefix("s")) + 1) * 7919 + sum(reads.values())) % 1_000_003


def _dag_start(run: str, me: str, fail_first: bool) -> int:
    started = tick()
    if bump(f"{run}/{me}") == 1 and fail_first:
        note(run, (me, started, tick(), "failed"))
        raise ConnectionError(f"{me}: first attempt fails")
    return started


def _dag_finish(run: str, me: str, started: int, reads: dict[str, int]) -> dict[str, Any]:
    output = {"step": me, "value": dag_value(me, reads), "seen": dict(sorted(reads.items()))}
    note(run, (me, started, tick(), "completed"))
    return output


@task(name="integration.dag_node", retries=1, retry_delay=0)
def dag_node(run: str, me: str, fail_first: bool = False, **reads: int) -> dict[str, Any]:
    started = _dag_start(run, me, fail_first)
    return _dag_finish(run, me, started, reads)


@task(name="integration.dag_node_async", retries=1, retry_delay=0)
async def dag_node_async(
    run: str, me: str, fail_first: bool = False, **reads: int
) -> dict[str, Any]:
    started = _dag_start(run, me, fail_first)
    await asyncio.sleep(0)
    return _dag_finish(run, me, started, reads)


@task(name="integration.fails_twice")
def fails_twice(key: str) -> int:
    """Raises on its first two attempts, noting when each attempt began."""
    note(key, time.monotonic())
    n = bump(key)
    if n <= 2:
        raise RuntimeError(f"attempt {n} fails")
    return n
