"""Tasks the map tests run; names start with ``flow_map.`` to stay unique."""

from __future__ import annotations

import threading
from typing import Any

from legato import task

_calls: dict[str, int] = {}
_calls_lock = threading.Lock()


def calls(key: str) -> int:
    """How many times a task counted a call under ``key``."""
    with _calls_lock:
        return _calls.get(key, 0)


def _count(key: str) -> int:
    with _calls_lock:
        _calls[key] = _calls.get(key, 0) + 1
        return _calls[key]


@task(name="flow_map.double")
def double(x: int) -> int:
    return x * 2


@task(name="flow_map.echo")
def echo(x: Any = None) -> Any:
    return x


@task(name="flow_map.describe")
def describe(item: Any, index: int) -> dict[str, Any]:
    return {"item": item, "index": index}


@task(name="flow_map.greet")
def greet(name: str, age: int) -> str:
    return f"{name} is {age}"


@task(name="flow_map.listing")
def listing(n: int) -> list[int]:
    return list(range(n))


@task(name="flow_map.total")
def total(rows: list[int]) -> int:
    return sum(rows)


@task(name="flow_map.add")
def add(a: int, b: int) -> int:
    return a + b


@task(name="flow_map.fail_on")
def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x * 10


@task(name="flow_map.counted", retries=2, retry_delay=0)
def counted(key: str, x: int, flaky: int) -> str:
    """Counts each call under ``key:x``; item ``flaky`` fails its first call."""
    n = _count(f"{key}:{x}")
    if x == flaky and n == 1:
        raise ConnectionError(f"item {x} attempt {n} failed")
    return f"{x} after {n}"


@task(name="flow_map.flaky_item")
def flaky_item(key: str, x: int, flaky: int) -> str:
    """Like ``counted``, without retries of its own (the map gives them)."""
    n = _count(f"{key}:{x}")
    if x == flaky and n == 1:
        raise ConnectionError(f"item {x} attempt {n} failed")
    return f"{x} after {n}"


@task(name="flow_map.inc")
def inc(x: int) -> int:
    return x + 1


#: the names of every task here, for store-level claims
ALL_TASKS = (
    "flow_map.double",
    "flow_map.echo",
    "flow_map.describe",
    "flow_map.greet",
    "flow_map.listing",
    "flow_map.total",
    "flow_map.add",
    "flow_map.fail_on",
    "flow_map.counted",
    "flow_map.flaky_item",
    "flow_map.inc",
)
